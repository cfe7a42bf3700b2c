"""Engine.IO's websocket transport, without a greenlet per connection.

python-engineio's eventlet websocket keeps three greenlets for each client for
as long as it stays: the HTTP request's, blocked reading; a writer, blocked on
the session's queue; and one asleep until the next ping. With the request's
handler, buffers and environ, an idle client cost a node about 60 KiB.

Here a websocket is a small object over a non-blocking socket:

- the hub calls it when the socket is readable; it reads what is there, takes
  the frames apart (``wsk.transport.frames``) and hands the messages to the
  Engine.IO session, in order, from a greenlet that lives only while there are
  messages;
- a writer greenlet lives only while the session has packets queued: it takes
  them and writes them in rounds of at most ``WRITE_ROUND`` bytes;
- a broadcast's frame, built once, is written at once to a client that waits
  for nothing else (``deliver``);
- the HTTP request that opened the websocket ends once the handshake is
  answered (``wsk.transport.http``), and the session's ping is a hub timer
  (``wsk.transport.engine``), not a sleeping greenlet.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import eventlet
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from eventlet import greenio
from eventlet.hubs import get_hub, notify_close, trampoline
from eventlet.hubs.hub import READ

from wsk.transport import eio3, internals, packets
from wsk.transport.frames import (
    NORMAL,
    NOT_UTF8,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    POLICY,
    PROTOCOL_ERROR,
    UNACCEPTABLE,
    Fragments,
    Frame,
    ProtocolViolation,
    accept_key,
    close_frame,
    frame,
    handshake_problem,
    parse,
)
from wsk.transport.http import DETACH_KEY

if TYPE_CHECKING:
    from wsk.transport.engine import EngineServer, Session

log = logging.getLogger("wsk.websocket")

READ_SIZE = 64 * 1024
# messages read and not yet handled, past which the socket is not read until they are
MAX_PENDING = 64
# control frames (pongs) waiting to be written, past which a client that pings
# and never reads is closed
MAX_CONTROL = 64
# most bytes one write of the writer takes from the queue
WRITE_ROUND = 256 * 1024

# the states of a transport
PROBING = "probing"  # an upgrade from polling: waiting for the client's probe
UPGRADING = "upgrading"  # probe answered: waiting for the client's upgrade packet
OPEN = "open"
CLOSED = "closed"


class WebSocketUpgrade:
    """python-engineio's websocket factory: answers the handshake, then hands over to a Transport.

    python-engineio makes one per request with the session's websocket handler,
    which is used only to find the session. ``EngineServer.handle_request`` has
    checked the handshake already; the checks here stand behind it.
    """

    def __init__(self, handler: Callable[[Any], Any], server: EngineServer) -> None:
        self.session: Session = internals.session_of(handler)  # type: ignore[assignment]
        self.server = server

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        problem = handshake_problem(environ)
        if problem is None and self.session.transport is not None:
            problem = "the session has a websocket already"
        if problem is not None:
            self.server.refused("handshake", self.session.sid, problem)
            if not self.session.connected:
                # a session opened for this websocket alone ends with it; an upgrade's
                # session goes on polling
                self.session.close(
                    wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR
                )
            start_response(
                "400 Bad Request",
                [("Content-Type", "text/plain"), ("Sec-WebSocket-Version", "13")],
            )
            return [problem.encode()]
        detach = environ.get(DETACH_KEY)
        if detach is None:
            raise RuntimeError("wsk's websocket transport needs wsk.transport.http")
        sock, release, early = detach()
        transport = Transport(self.server, self.session, sock, release)
        response = (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(environ['HTTP_SEC_WEBSOCKET_KEY'])}\r\n\r\n"
        )
        transport.start(response.encode("ascii"), early)
        internals.response_sent_elsewhere()
        return []


class Transport:
    """One client's websocket, tied to its Engine.IO session."""

    __slots__ = (
        "control",
        "control_in_flight",
        "dispatching",
        "fragments",
        "inbuf",
        "listener",
        "pending",
        "raw",
        "release",
        "server",
        "session",
        "state",
        "writing",
    )

    def __init__(
        self,
        server: EngineServer,
        session: Session,
        sock: greenio.GreenSocket,
        release: Callable[[], None],
    ) -> None:
        self.server = server
        self.session = session
        # the non-blocking OS socket under eventlet's green one, which is let go: its
        # cached methods and buffers cost an idle client about 1 KiB
        self.raw = internals.unwrap(sock)
        self.release = release
        self.state = PROBING if session.connected else OPEN
        self.listener: Any = None
        self.inbuf: bytearray | None = None
        self.fragments: Fragments | None = None
        self.pending: deque[str | bytes] | None = None
        self.dispatching = False
        self.writing = False
        self.control: list[bytes] | None = None
        self.control_in_flight = 0  # control frames the writer is writing now

    # -- lifecycle

    def start(self, handshake: bytes, early: bytes = b"") -> None:
        """Take the socket over from the HTTP request, and answer its ``handshake``.

        The answer goes out in one write with what the session queued already
        (Engine.IO's OPEN packet, for a new session). ``early`` is what the client
        sent after its request before it had the answer.
        """
        session = self.session
        session.transport = self
        if self.state is PROBING:
            session.upgrading = True  # packets wait in the queue while the upgrade runs
            # an upgrade that does not complete must not hold its connection
            get_hub().schedule_call_global(self.server.config.request_timeout, self._upgrade_due)
        else:
            session.connected = True
            session.upgraded = True
        session.queue.on_put = self._queued
        self.server.logger.info("%s: websocket open (%s)", session.sid, self.state)
        self.writing = True
        self._write(handshake)
        self._listen()
        if early and self.state is not CLOSED:
            self._got(early)

    def _upgrade_due(self) -> None:
        if self.state in (PROBING, UPGRADING):
            self.server.refused(
                "handshake", self.session.sid, "the upgrade did not complete in time"
            )
            self.lost("upgrade not completed in time")

    def lost(self, reason: str, why: str | None = None) -> None:
        """The connection failed or the client left: close it, and its session if it was open.

        Never blocks, so that the hub may call it.
        """
        was_open = self.state is OPEN
        log.debug("websocket %s closed: %s", self.session.sid, reason)
        self._close_socket()
        if was_open:
            eventlet.spawn_n(self._close_session, why or self.server.reason.TRANSPORT_CLOSE)
        elif self.session.upgrading:
            # a failed upgrade: the session goes on polling
            self.session.upgrading = False

    def _close_session(self, reason: str) -> None:
        session = self.session
        session.close(wait=False, abort=True, reason=reason)
        if self.server.sockets.get(session.sid) is session:
            del self.server.sockets[session.sid]

    def _close_socket(self) -> None:
        if self.state is CLOSED:
            return
        self.state = CLOSED
        self._unlisten()
        session = self.session
        if session.transport is self:
            session.transport = None
            session.queue.on_put = None
        self.pending = self.inbuf = self.fragments = self.control = None
        raw = self.raw
        # wake a writer waiting on the socket (it sees it closed), then close it
        notify_close(raw.fileno())
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
        raw.close()
        self.release()

    def _listen(self) -> None:
        if self.listener is None and self.state is not CLOSED:
            hub = get_hub()
            self.listener = hub.add(
                READ, self.raw.fileno(), self._readable, self._hub_closed, _nothing
            )
            internals.hand_listener_to_hub(self.listener)

    def _unlisten(self) -> None:
        if self.listener is not None:
            get_hub().remove(self.listener)
            self.listener = None

    def _hub_closed(self, *args: Any) -> None:
        self.listener = None
        self.lost("socket closed")

    # -- reading (in the hub: nothing here may block)

    def _readable(self, fileno: int) -> None:
        try:
            data = self.raw.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost(f"read failed: {exc}")
            return
        if not data:
            self.lost("closed by the client")
            return
        self._got(data)

    def _got(self, data: bytes) -> None:
        try:
            self._take(data)
        except ProtocolViolation as exc:
            self.refuse(exc)
        except Exception:
            log.exception("websocket %s: unexpected error", self.session.sid)
            self.lost("unexpected error", self.server.reason.TRANSPORT_ERROR)

    def _take(self, data: bytes) -> None:
        """Take the complete frames out of what was read; keep the rest for the next read."""
        buf: bytes | bytearray = data
        if self.inbuf is not None:
            self.inbuf += data
            buf = self.inbuf
        frames, used = parse(buf, self.server.max_http_buffer_size)
        if used == len(buf):
            self.inbuf = None
        elif used or self.inbuf is None:
            self.inbuf = bytearray(buf[used:])
        for fin, opcode, payload in frames:
            if self.state is CLOSED:
                return
            self._frame(fin, opcode, payload)

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode >= OP_CLOSE:
            if not fin or len(payload) > 125:
                raise ProtocolViolation(PROTOCOL_ERROR, "a control frame must be final and short")
            if opcode == OP_CLOSE:
                self._last_words(close_frame(NORMAL))
                self.lost("closed by the client (close frame)")
            elif opcode == OP_PING:
                self.send_control(frame(OP_PONG, payload))
            elif opcode != OP_PONG:
                raise ProtocolViolation(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            return
        if opcode == OP_CONTINUATION:
            if self.fragments is None:
                raise ProtocolViolation(PROTOCOL_ERROR, "a continuation frame without a message")
            self.fragments.add(payload)
            if not fin:
                return
            opcode, payload = self.fragments.opcode, self.fragments.join()
            self.fragments = None
        elif opcode in (OP_TEXT, OP_BINARY):
            if self.fragments is not None:
                raise ProtocolViolation(PROTOCOL_ERROR, "a new message inside a fragmented one")
            if not fin:
                config = self.server.config
                self.fragments = Fragments(
                    opcode, payload, config.max_payload, config.max_fragments
                )
                return
        else:
            raise ProtocolViolation(PROTOCOL_ERROR, f"unknown opcode {opcode}")
        if opcode == OP_TEXT:
            try:
                self._received(payload.decode("utf-8"))
            except UnicodeDecodeError:
                raise ProtocolViolation(NOT_UTF8, "a text message that is not UTF-8") from None
        else:
            self._received(payload)

    def _received(self, message: str | bytes) -> None:
        if self.pending is None:
            self.pending = deque()
        self.pending.append(message)
        if not self.dispatching:
            self.dispatching = True
            eventlet.spawn_n(self._dispatch)
        elif len(self.pending) >= MAX_PENDING:
            self._unlisten()  # read again once the session has caught up

    def refuse(self, violation: ProtocolViolation) -> None:
        """Close the websocket of a client that broke the protocol; nobody else notices."""
        self.server.refused("frame", self.session.sid, str(violation))
        self._last_words(close_frame(violation.code))
        self.lost(str(violation), self.server.reason.TRANSPORT_ERROR)

    def _last_words(self, data: Frame) -> None:
        """Send a close frame before closing, unless a frame is being written (it would cut it)."""
        if self.writing or self.state is CLOSED:
            return
        with contextlib.suppress(OSError):
            self.raw.send(data)

    # -- handling messages (in a greenlet of their own)

    def _dispatch(self) -> None:
        try:
            while self.pending and self.state is not CLOSED:
                self._handle(self.pending.popleft())
        except Exception:
            log.exception("websocket %s: unexpected error", self.session.sid)
            self.lost("unexpected error", self.server.reason.TRANSPORT_ERROR)
        finally:
            self.dispatching = False
            if self.state is not CLOSED:
                self.pending = None
                self._listen()

    def _handle(self, message: str | bytes) -> None:
        session = self.session
        if self.state is PROBING:
            if self._upgrade_goes_on(message, "2probe", "no probe"):
                self.state = UPGRADING
                self.send_control(frame(OP_TEXT, b"3probe"))
                session.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
            return
        if self.state is UPGRADING:
            if self._upgrade_goes_on(message, "5", "no upgrade packet"):
                session.upgraded = True
                session.upgrading = False
                self.state = OPEN
                self.kick()
            return
        try:
            pkt = eio3.decode_message(message) if session.eio3 else packets.decode(message)
        except packets.BadPacket as exc:
            self.refuse(ProtocolViolation(UNACCEPTABLE, f"not an Engine.IO packet ({exc})"))
            return
        try:
            session.receive(pkt)
        except eio_exceptions.UnknownPacketError:
            self.refuse(ProtocolViolation(UNACCEPTABLE, "a packet a client may not send"))
        except eio_exceptions.SocketIsClosedError:
            self.lost("session closed")

    def _upgrade_goes_on(self, message: str | bytes, expected: str, failure: str) -> bool:
        """Whether an upgrade from polling got the message it waits for; if not, it ends here."""
        if message == expected:
            return True
        self.server.logger.info("%s: failed websocket upgrade, %s", self.session.sid, failure)
        self.lost(failure)
        return False

    # -- writing

    def _queued(self) -> None:
        """The session queued a packet (python-engineio's ``Socket.send`` or ``close``)."""
        if self.state is OPEN:
            self.kick()
        elif self.session.closed and self.state is not CLOSED:
            self.lost("session closed during the upgrade")

    def kick(self) -> None:
        """Make sure a writer runs: what is queued goes out."""
        if not self.writing and self.state is not CLOSED:
            self.writing = True
            eventlet.spawn_n(self._write, b"")

    def send_control(self, data: Frame) -> None:
        """Send a control frame ahead of what is queued, never inside another frame."""
        if self.control is None:
            self.control = []
        if len(self.control) + self.control_in_flight >= MAX_CONTROL:
            raise ProtocolViolation(POLICY, f"more than {MAX_CONTROL} pings left unread")
        self.control.append(data)
        self.kick()

    def deliver(self, data: Frame) -> None:
        """Write ``data`` now if the client waits for nothing else, else queue it. Never blocks."""
        queue = self.session.queue
        if self.writing or queue.qsize():
            queue.put(data)
            return
        try:
            sent = self.raw.send(data)
        except OSError:
            # would block, or the connection is gone: the writer sends it, or finds out
            sent = 0
        if sent < len(data):
            self.writing = True
            eventlet.spawn_n(self._write, data[sent:])

    def _write(self, first: bytes) -> None:
        """Write ``first``, then what is queued, until nothing is; one write per round."""
        queue = self.session.queue
        chunks = [first] if first else []
        size = len(first)
        try:
            while self.state is not CLOSED:
                if self.control:
                    chunks += self.control
                    self.control_in_flight = len(self.control)
                    self.control = None
                closing = False
                if self.state is OPEN:
                    while size < WRITE_ROUND and queue.qsize():
                        item = queue.take()
                        if item is None:
                            closing = True
                            chunks.append(close_frame(NORMAL))
                            break
                        data = _encode(item, self.session.eio3)
                        chunks.append(data)
                        size += len(data)
                if not chunks:
                    break
                self._sendall(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                chunks = []
                size = 0
                self.control_in_flight = 0
                if closing:
                    self._close_socket()
        except OSError as exc:
            self.lost(f"write failed: {exc}")
        finally:
            self.writing = False

    def _sendall(self, data: bytes) -> None:
        """Write all of ``data``, waiting in the hub while the client's buffer is full.

        A client that vanishes is found by the ping timeout; a writer does not wait
        longer than that on one that stopped reading (it raises, and the transport
        is lost).
        """
        view = memoryview(data)
        patience = self.server.ping_interval + self.server.ping_timeout
        while view:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                view = view[self.raw.send(view) :]
            if view:
                trampoline(self.raw, write=True, timeout=patience, timeout_exc=_WRITE_TIMEOUT)


_WRITE_TIMEOUT = TimeoutError("the client did not read for the whole ping timeout")


def frame_of(pkt: eio_packet.Packet) -> Frame:
    """The websocket frame of an Engine.IO text packet, built once per packet object.

    python-socketio sends one packet object to all the recipients of a broadcast;
    server-to-client frames are not masked, so the bytes are the same for all.
    """
    data = pkt.__dict__.get("wsk_frame")
    if data is None:
        data = frame(OP_TEXT, pkt.encode().encode("utf-8"))
        pkt.wsk_frame = data
    return data


def _encode(item: Any, eio3_session: bool = False) -> bytes:
    """The frame of a queued item: a frame already, or a python-engineio packet."""
    if type(item) is Frame:
        return item
    if item.binary:
        return frame(OP_BINARY, eio3.encode_binary(item.data) if eio3_session else item.data)
    return frame_of(item)


def _nothing(*args: Any) -> None:
    pass
