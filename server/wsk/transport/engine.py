"""The node's Engine.IO server: python-engineio's, made lean per client, bounded and never blocking.

- websockets are ``wsk.transport.websocket`` transports, and a broadcast's frame
  is built once and written straight to each websocket recipient;
- long-polling POSTs are checked before anything is decoded (``wsk.transport.polling``)
  and their packets handed to the session in slices that let the hub breathe;
- a session's next ping is a hub timer rather than a greenlet asleep for the
  ping interval;
- a long-polling response carries at most 16 packets, which python-engineio's
  own client needs;
- what a node queues for one client is bounded, in packets and bytes: a client
  that does not keep up is dropped, not buffered without end;
- clients that stopped answering pings are found by a sweep a few times per
  ping timeout, not by a wake-up per session, and the sweep survives its errors;
- disconnecting a session does not wait for its client.

python-engineio's private hooks are reached through ``wsk.transport.internals``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import eventlet
import eventlet.event
import eventlet.queue
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio.socket import Socket
from eventlet.hubs import get_hub

from wsk.transport import eio3, polling
from wsk.transport.frames import handshake_problem
from wsk.transport.internals import EngineIOHooks
from wsk.transport.websocket import OPEN, Transport, WebSocketUpgrade, frame_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from wsk.config import Config
    from wsk.metrics import Metrics

log = logging.getLogger("wsk.engine")

# python-engineio's client refuses a payload of more packets than this
# (engineio.payload.Payload.max_decode_packets, whose default it is)
MAX_PACKETS_PER_POLL = 16
# packets of one long-polling POST handed to the session before the hub gets a turn
POST_SLICE = 100
# sessions the sweep checks before it lets the others run
SWEEP_SLICE = 1000


class SessionQueue:
    """An Engine.IO session's packet queue: small while empty, counting what it holds.

    It stands where python-engineio puts an eventlet ``Queue`` (a deque, two sets,
    a condition and an event: about 1.5 KiB for every client). Here an empty queue
    is three slots: its deque exists only while packets wait, and an event only
    while a long-polling request waits for one. ``put`` (python-engineio's
    ``Socket.send`` and ``close``, and wsk's fan-out) adds; ``take`` (wsk's writers
    and polls, its only readers) removes.
    """

    __slots__ = ("items", "on_overflow", "on_put", "size", "waiter")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.items: deque[Any] | None = None
        self.waiter: eventlet.event.Event | None = None
        self.on_put: Callable[[], None] | None = None
        self.on_overflow: Callable[[int, int], None] | None = None
        self.size = 0  # bytes queued, roughly: the length of each packet's data

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if self.items is None:
            self.items = deque()
        self.items.append(item)
        if item is not None:
            self.size += _size(item)
            if self.on_overflow is not None:
                self.on_overflow(len(self.items), self.size)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.ready():
            waiter.send()
        if self.on_put is not None:
            self.on_put()

    def qsize(self) -> int:
        return len(self.items) if self.items else 0

    def take(self, timeout: float | None = None) -> Any:
        """The next item; waits up to ``timeout`` (None: not at all), else raises Empty."""
        if not self.items:
            if timeout is None:
                raise eventlet.queue.Empty
            self.waiter = eventlet.event.Event()
            eventlet.with_timeout(timeout, self.waiter.wait, timeout_value=None)
            self.waiter = None
            if not self.items:
                raise eventlet.queue.Empty
        item = self.items.popleft()
        if not self.items:
            self.items = None  # an idle client keeps no deque
        if item is not None:
            self.size -= _size(item)
        return item

    def task_done(self) -> None:
        """python-engineio's Queue API; nothing waits on it here."""

    def join(self) -> None:
        """python-engineio's ``close(wait=True)``: wait until the queue is drained."""
        while self.items:
            eventlet.sleep(0.01)

    def empty(self) -> bool:
        return not self.items


def _size(item: Any) -> int:
    data = item if isinstance(item, bytes) else item.data
    return len(data) if isinstance(data, str | bytes) else 16


class Session(Socket):
    """python-engineio's session (its ``Socket``), as wsk serves it."""

    server: EngineServer
    queue: SessionQueue
    # the websocket of this session, open or being upgraded to; None while it polls
    transport: Transport | None = None
    # an Engine.IO 3 client (wsk.transport.eio3): it pings, the server answers
    eio3 = False

    def receive(self, pkt: eio_packet.Packet) -> None:
        if self.eio3 and pkt.packet_type == eio_packet.PING:
            # an Engine.IO 3 client pings; it is gone once it has not for pingInterval
            # + pingTimeout (check_ping_timeout measures from last_ping + pingTimeout)
            self.last_ping = time.time() + self.server.ping_interval
            self.send(eio_packet.Packet(eio_packet.PONG, pkt.data))
            return
        super().receive(pkt)

    def schedule_ping(self) -> None:
        # python-engineio pings from a greenlet of its own that sleeps through the
        # ping interval first; a timer does the same for a few bytes
        if self.eio3:
            return  # its client pings
        if self.last_ping:
            self.last_ping = None
            get_hub().schedule_call_global(
                self.server.ping_interval, eventlet.spawn_n, self._ping_now
            )

    def _ping_now(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.send(eio_packet.Packet(eio_packet.PING))

    def poll(self) -> list[eio_packet.Packet]:
        """Wait for packets for a long-polling client, and take at most MAX_PACKETS_PER_POLL."""
        queue = self.queue
        try:
            first = queue.take(timeout=self.server.ping_interval + self.server.ping_timeout)
        except eventlet.queue.Empty:
            raise eio_exceptions.QueueEmpty() from None
        if first is None:
            return []
        packets = [first]
        while len(packets) < MAX_PACKETS_PER_POLL and queue.qsize():
            pkt = queue.take()
            if pkt is None:
                queue.put(None)  # the next poll finds the session closed
                break
            packets.append(pkt)
        return packets

    def handle_post_request(self, environ: dict[str, Any]) -> None:
        """Hand a long-polling POST's packets, checked already, to the session in slices."""
        received = environ.pop(polling.PACKETS_KEY, None)
        if received is None:
            raise eio_exceptions.ContentTooLongError()  # not checked: refuse, never decode here
        for count, pkt in enumerate(received, 1):
            if self.closed:
                return
            self.receive(pkt)
            if count % POST_SLICE == 0:
                eventlet.sleep(0)

    def overflowing(self, packets: int, size: int) -> None:
        """The queue grew: drop a client that lets more pile up than the node allows.

        The drop runs in a greenlet of its own, not inside the ``put`` of whoever
        was sending (a broadcast to many clients, say).
        """
        config = self.server.config
        if packets <= config.client_queue_packets and size <= config.client_queue_bytes:
            return
        self.queue.on_overflow = None  # once
        why = (
            f"{packets} packets and {size} bytes wait for it (limits "
            f"{config.client_queue_packets} packets, {config.client_queue_bytes} bytes)"
        )
        eventlet.spawn_n(self.server.drop, self.sid, "queue", why)


class EngineServer(EngineIOHooks):
    """python-engineio's Server with wsk's sessions, transports and bounds."""

    session_class = Session
    websocket_factory = WebSocketUpgrade

    def __init__(self, config: Config, metrics: Metrics | None = None, **kwargs: Any) -> None:
        self.config = config
        self.metrics = metrics
        super().__init__(
            max_http_buffer_size=config.max_payload,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            **kwargs,
        )
        # python-engineio logs every packet at info level; asked once here, not once
        # per recipient of every broadcast
        self.log_packets = self.logger.isEnabledFor(logging.INFO)

    def generate_id(self) -> str:
        """A session id: ``<sid-prefix>~`` and 128 random bits, so that HAProxy can route by it."""
        token = secrets.token_urlsafe(16)
        return f"{self.config.sid_prefix}~{token}" if self.config.sid_prefix else token

    def create_queue(self, *args: Any, **kwargs: Any) -> SessionQueue:
        """A session's packet queue (python-engineio's API)."""
        return SessionQueue(*args, **kwargs)

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        result = super()._trigger_event(event, *args, **kwargs)
        if event == "connect":
            sock = self.sockets.get(args[0])
            if isinstance(sock, Session):
                sock.queue.on_overflow = sock.overflowing
        return result

    # -- refusals: one log line and one count each

    def refused(self, kind: str, sid: str | None, why: str) -> None:
        """Log and count one input refused for not following the protocol."""
        log.info("refused %s from %s: %s", kind, sid or "a new client", why)
        if self.metrics is not None:
            self.metrics.protocol_errors.labels(kind).inc()

    def drop(self, sid: str, reason: str, why: str) -> None:
        """Close a session for going past a limit, with one log line and one count."""
        sock = self.sockets.get(sid)
        if sock is None or sock.closing or sock.closed:
            return
        log.warning("dropping client %s: %s", sid, why)
        if self.metrics is not None:
            self.metrics.clients_dropped.labels(reason).inc()
        sock.close(wait=False, abort=True, reason=self.reason.SERVER_DISCONNECT)
        if sock.transport is not None:
            sock.transport.lost(f"dropped: {reason}")

    # -- requests

    def handle_request(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """python-engineio's, behind the checks that must come before anything is decoded."""
        if not self.origin_allowed(environ):
            return super().handle_request(environ, start_response)  # it refuses, as it should
        query = parse_qs(environ.get("QUERY_STRING", ""))
        sid = query.get("sid", [None])[0]
        method = environ.get("REQUEST_METHOD")
        problem = None
        headers = [("Content-Type", "application/json")]
        session = self.sockets.get(sid) if sid else None
        transport = query.get("transport", ["polling"])[0]
        if self.config.allow_eio3 and method == "GET" and transport == "polling":
            if sid is None and query.get("EIO") == ["3"]:
                return self._handshake_eio3(environ, start_response, query)
            if session is not None and session.eio3 and session.connected:
                return self._poll_eio3(session, environ, start_response)
        if (
            self.config.allow_eio3
            and method == "GET"
            and transport == "websocket"
            and sid is None
            and query.get("EIO") == ["3"]
            and handshake_problem(environ) is None
        ):
            return self._handshake_eio3(environ, start_response, query)
        if method == "POST" and sid is not None:
            problem = polling.check_post(self, sid, environ)
        elif method == "GET" and query.get("transport") == ["websocket"]:
            problem = self._websocket_problem(sid, environ)
            headers.append(("Sec-WebSocket-Version", "13"))  # the version it would take
        if problem is None:
            return super().handle_request(environ, start_response)
        status, reason = problem
        body = polling.error_body(reason)
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers + self.cors_headers(environ))
        return [body]

    def _handshake_eio3(
        self, environ: dict[str, Any], start_response: Callable[..., Any], query: dict
    ) -> Iterable[bytes]:
        """A new Engine.IO 3 session: python-engineio 4's handshake, in protocol 3."""
        self.start_monitor()
        transport = query.get("transport", ["polling"])[0]
        sid = self.generate_id()
        session = Session(self, sid)
        session.eio3 = True
        session.last_ping = time.time() + self.ping_interval
        self.sockets[sid] = session
        upgrades = ["websocket"] if transport == "polling" and self.allow_upgrades else []
        session.send(
            eio_packet.Packet(
                eio_packet.OPEN,
                {
                    "sid": sid,
                    "upgrades": upgrades,
                    "pingInterval": int(self.ping_interval * 1000),
                    "pingTimeout": int(self.ping_timeout * 1000),
                },
            )
        )
        accepted = self.session_made(sid, environ)
        if accepted is not None and accepted is not True:
            self.sockets.pop(sid, None)
            return self._answer(environ, start_response, "401 Unauthorized", "refused")
        if transport == "websocket":
            answer = session.handle_get_request(environ, start_response)
            if session.closed and self.sockets.get(sid) is session:
                del self.sockets[sid]
            return answer
        session.connected = True
        return self._poll_eio3(session, environ, start_response)

    def _poll_eio3(
        self, session: Session, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """A long-polling GET of an Engine.IO 3 session, answered in protocol 3's framing."""
        try:
            packets = session.handle_get_request(environ, start_response)
        except eio_exceptions.QueueEmpty:
            return self._answer(environ, start_response, "400 Bad Request", "session closed")
        if session.closed and self.sockets.get(session.sid) is session:
            del self.sockets[session.sid]
        if not isinstance(packets, list):
            return packets  # an upgrade answered it
        body = eio3.encode_payload(packets).encode("utf-8")
        headers = [
            ("Content-Type", "text/plain; charset=UTF-8"),
            ("Content-Length", str(len(body))),
        ]
        start_response("200 OK", headers + self.cors_headers(environ))
        return [body]

    def _answer(
        self, environ: dict[str, Any], start_response: Callable[..., Any], status: str, why: str
    ) -> list[bytes]:
        body = polling.error_body(why)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(status, headers + self.cors_headers(environ))
        return [body]

    def _websocket_problem(
        self, sid: str | None, environ: dict[str, Any]
    ) -> tuple[str, str] | None:
        problem = handshake_problem(environ)
        session = self.sockets.get(sid) if sid else None
        if problem is None and session is not None and session.transport is not None:
            problem = "the session has a websocket already"
        if problem is None:
            return None
        self.refused("handshake", sid, problem)
        return "400 Bad Request", problem

    # -- sending

    def send_packet(self, sid: str, pkt: Any) -> None:
        """Send a packet to a client: straight onto its websocket when it can."""
        sock = self.sockets.get(sid)
        transport = sock.transport if sock is not None else None
        if transport is None or transport.state is not OPEN or pkt.binary or sock.closing:
            super().send_packet(sid, pkt)
            return
        # what python-engineio's Socket.send does before it queues: may close the socket
        if not sock.check_ping_timeout():
            return
        transport.deliver(frame_of(pkt))
        if self.log_packets:
            self.logger.info(
                "%s: Sending packet %s data %s",
                sid,
                eio_packet.packet_names[pkt.packet_type],
                pkt.data,
            )

    def disconnect(self, sid: str | None = None) -> None:
        """Close one session, or all of them, without waiting for their clients."""
        sids = [sid] if sid is not None else list(self.sockets)
        for one in sids:
            sock = self.sockets.pop(one, None)
            if sock is not None:
                sock.close(wait=False, reason=self.reason.SERVER_DISCONNECT)

    # -- watching

    def monitor_sessions(self) -> None:
        """Close the sessions of clients that stopped answering pings; forget closed sessions.

        python-engineio's own wakes once per session per ping timeout (250 times a
        second for 5,000 sessions and a 20 s timeout, a third of an idle node's CPU);
        this one goes through all of them four times per ping timeout. An error
        with one session is logged and the sweep goes on: ping detection must not
        end for the life of the process.
        """
        self.service_task_event = self.create_event()
        interval = max(0.25, self.ping_timeout / 4)
        while not self.service_task_event.wait(timeout=interval):
            try:
                self.sweep()
            except Exception:
                log.exception("the ping-timeout sweep failed; it runs again in %.2f s", interval)

    def sweep(self) -> None:
        """One pass over all sessions."""
        for count, (sid, sock) in enumerate(list(self.sockets.items()), 1):
            try:
                if sock.closed:
                    if self.sockets.get(sid) is sock:
                        del self.sockets[sid]
                elif not sock.closing:
                    sock.check_ping_timeout()
            except Exception:
                log.exception("checking session %s failed", sid)
            if count % SWEEP_SLICE == 0:
                eventlet.sleep(0)  # let the others run during a long sweep


# what of a request's environ a session keeps: who the client is, and how it asked
SESSION_ENVIRON = (
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_ORIGIN",
    "HTTP_USER_AGENT",
)


def session_environ(environ: dict[str, Any]) -> dict[str, Any]:
    """The part of a request's environ a session keeps (``SESSION_ENVIRON``).

    python-socketio keeps the environ of a session's first request for the whole
    session, and hands it to the connect handler of each namespace. All of it,
    headers and the request's file objects, is 2 KiB and more for every client,
    and the files keep the connection's buffers alive.
    """
    return {key: environ[key] for key in SESSION_ENVIRON if key in environ}
