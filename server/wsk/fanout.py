"""A broadcast costs each websocket recipient one frame write, not a queue hop and a re-encode.

python-socketio's ``Manager.emit`` shares one Engine.IO packet object between
all the recipients of a broadcast, and python-engineio would queue it for each
of them, for a writer to encode and frame it again, once per recipient.

Here, for a client on an established websocket (``wsk.websocket``):

- the frame is built once per packet and cached on the packet object
  (server-to-client frames are not masked, so the bytes are the same for every
  recipient);
- when nothing is waiting for that client (its queue is empty and no writer
  runs), the frame is written at once with one non-blocking ``send()``.
  Whatever the kernel does not take (a slow reader's full buffer) is finished
  by a writer greenlet, and everything after it queues behind it: per-client
  order is kept, frames never interleave, and the broadcasting greenlet never
  waits on a client;
- otherwise the frame is queued, and the writer sends the prepared bytes.

Polling clients, sockets being upgraded and binary packets take
python-engineio's path unchanged.
"""

from __future__ import annotations

from typing import Any

from engineio import packet as eio_packet

from wsk.frames import OP_TEXT, Frame, frame
from wsk.websocket import OPEN

# name of the attribute that caches a packet's frame on the packet itself
_FRAME_ATTR = "_wsk_frame"


def frame_of(pkt: eio_packet.Packet) -> Frame:
    """The websocket frame of an Engine.IO text packet, built once per packet object."""
    data = pkt.__dict__.get(_FRAME_ATTR)
    if data is None:
        data = frame(OP_TEXT, pkt.encode().encode("utf-8"))
        setattr(pkt, _FRAME_ATTR, data)
    return data


def send_packet(server: Any, sid: str, pkt: eio_packet.Packet) -> bool:
    """Send ``pkt`` to one websocket client the fast way; False if it must take engineio's path.

    ``server`` is a ``wsk.engine.EngineServer``, ``sid`` an Engine.IO session id.
    """
    sock = server.sockets.get(sid)
    if sock is None:
        return False
    transport = sock.__dict__.get("wsk_transport")
    if transport is None or transport.state is not OPEN or pkt.binary or sock.closing:
        return False
    # what engineio's Socket.send does before it queues: may close the socket
    if not sock.check_ping_timeout():
        return True
    transport.deliver(frame_of(pkt))
    if server.log_packets:
        server.logger.info(
            "%s: Sending packet %s data %s",
            sid,
            eio_packet.packet_names[pkt.packet_type],
            pkt.data,
        )
    return True
