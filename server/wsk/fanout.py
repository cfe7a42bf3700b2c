"""A broadcast costs each websocket recipient one frame write, not a queue hop and a re-encode.

python-engineio hands every packet for a client to that client's queue; the
client's writer greenlet wakes (a hub timer per put to an idle queue), takes it,
and eventlet frames the text again and writes it. For a broadcast to a room of N
websocket clients that is N queue puts, N wake-ups, N framings of the same bytes
and N ``sendall`` calls from N greenlets.

Here, for a client on an established websocket:

- the frame is built once per packet and cached on the packet object, which
  python-socketio's ``Manager.emit`` shares between all the recipients of a
  broadcast (server-to-client frames are not masked, so the bytes are the same
  for every recipient);
- when nothing is waiting for that client (its queue is empty and its writer
  greenlet is parked in ``queue.get``, so it holds no packet either) and no one
  is writing to its socket, the frame is written at once with one non-blocking
  ``send()`` on the socket. Whatever the kernel does not take (a slow reader's
  full buffer) is finished by a greenlet of its own that holds the websocket's
  send lock meanwhile, and everything after it queues behind it: per-client
  order is kept, frames never interleave, and the broadcasting greenlet never
  waits on a client;
- otherwise the frame is queued, and the writer sends the prepared bytes.

Polling clients, sockets being upgraded, binary packets and websockets with
permessage-deflate take python-engineio's path unchanged.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import eventlet
from engineio import packet as eio_packet
from eventlet.greenio import GreenSocket
from eventlet.websocket import RFC6455WebSocket

log = logging.getLogger("wsk.fanout")

# name of the attribute a python-engineio Socket carries while it has a websocket
WEBSOCKET_ATTR = "wsk_websocket"
# name of the attribute that caches a packet's frame on the packet itself
_FRAME_ATTR = "_wsk_frame"


class Frame(bytes):
    """The bytes of a websocket frame, or the part of one still to be written, ready to send."""

    __slots__ = ()


def text_frame(text: str) -> Frame:
    """An unmasked, final, uncompressed websocket text frame carrying ``text`` (RFC 6455, 5.2)."""
    payload = text.encode("utf-8")
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 0x10000:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return Frame(header + payload)


def frame_of(pkt: eio_packet.Packet) -> Frame:
    """The websocket frame of an Engine.IO text packet, built once per packet object."""
    frame = pkt.__dict__.get(_FRAME_ATTR)
    if frame is None:
        frame = text_frame(pkt.encode())
        setattr(pkt, _FRAME_ATTR, frame)
    return frame


class _Queued:
    """A queue item for the engineio writer: its ``encode()`` gives the frame, ready to send.

    Only queued for a socket that is upgraded to websocket for good, whose
    queue only the websocket writer reads.
    """

    __slots__ = ("frame",)

    def __init__(self, frame: Frame) -> None:
        self.frame = frame

    def encode(self, b64: bool = False) -> Frame:
        return self.frame


class FanoutWebSocket:
    """Wraps eventlet's websocket for python-engineio's handler, and writes prepared frames.

    python-engineio's writer greenlet sends each packet it takes from the queue
    with ``ws.send(pkt.encode())``; a ``Frame`` is written as it is (under the
    websocket's send lock, as eventlet's own ``send`` does), anything else goes
    to eventlet's ``send``. Every other attribute is the wrapped websocket's.
    """

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        # eventlet's RFC6455WebSocket._send (send lock + sendall) and _sendlock: the
        # private parts of eventlet 0.3x/0.4x this module relies on
        self._send_frame = ws._send
        self._sendlock = ws._sendlock
        sock = getattr(ws, "socket", None)
        # frames can be shared only on a server-side RFC 6455 websocket without
        # compression (eventlet negotiates permessage-deflate when a client asks)
        self.shares_frames = (
            isinstance(ws, RFC6455WebSocket)
            and not ws.client
            and "permessage-deflate" not in (ws.extensions or {})
        )
        # the non-blocking OS socket under eventlet's green one, for direct writes
        self._raw = sock.fd if self.shares_frames and type(sock) is GreenSocket else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    def send(self, message: Any, **kwargs: Any) -> None:
        if type(message) is Frame:
            self._send_frame(message)
        else:
            self._ws.send(message, **kwargs)

    def deliver(self, queue: Any, frame: Frame) -> bool:
        """Write ``frame`` now if the client waits for nothing else, else queue it.

        Returns True when it was written whole at once. Never blocks the caller.
        """
        raw = self._raw
        # queue.getting(): the writer is parked in queue.get(), so it holds no packet
        # taken earlier; the lock: no one is in the middle of writing a frame. No
        # other greenlet runs until this returns: the send below does not yield.
        if (
            raw is None
            or queue.qsize()
            or not queue.getting()
            or not self._sendlock.acquire(blocking=False)
        ):
            queue.put(_Queued(frame))
            return False
        try:
            sent = raw.send(frame)
        except OSError:
            # would block (nothing written), or the connection is gone: the writer
            # sends the frame, or finds out and closes
            sent = 0
        if sent == len(frame):
            self._sendlock.release()
            return True
        if not sent:
            self._sendlock.release()
            queue.put(_Queued(frame))
            return False
        # the kernel took part of the frame: the rest goes out from a greenlet of
        # its own, which keeps the send lock until it is written, so that the
        # writer's next frames (and eventlet's control frames) wait behind it
        eventlet.spawn_n(self._finish, frame[sent:])
        return False

    def _finish(self, rest: bytes) -> None:
        try:
            self._ws.socket.sendall(rest)
        except Exception as exc:
            # the writer's next send fails too, and closes the session
            log.debug("websocket write failed: %s", exc)
        finally:
            self._sendlock.release()


def send_packet(server: Any, sid: str, pkt: eio_packet.Packet) -> bool:
    """Send ``pkt`` to one websocket client the fast way; False if it must take engineio's path.

    ``server`` is a python-engineio Server, ``sid`` an Engine.IO session id.
    """
    sock = server.sockets.get(sid)
    if sock is None:
        return False
    ws = sock.__dict__.get(WEBSOCKET_ATTR)
    if (
        ws is None
        or not ws.shares_frames
        or pkt.binary
        or sock.closed
        or sock.closing
        or sock.upgrading
        or not sock.upgraded
    ):
        return False
    # what engineio's Socket.send does before it queues: may close the socket
    if not sock.check_ping_timeout():
        return True
    ws.deliver(sock.queue, frame_of(pkt))
    logger = server.logger
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "%s: Sending packet %s data %s",
            sid,
            eio_packet.packet_names[pkt.packet_type],
            pkt.data,
        )
    return True
