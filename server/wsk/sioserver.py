"""The node's Socket.IO server: python-socketio's, refusing what a client may not send.

python-socketio dispatches what arrives without asking much of it: a packet
that does not parse leaves a traceback in the log; ``42[]``, ``42{}`` or
``42[[1]]`` reach its dispatcher and fail there; ``42["disconnect"]`` runs the
application's disconnect handler as if the client had left; and a packet may
announce ten billion binary attachments, which it then keeps as they come.

Here, before python-socketio decodes or dispatches anything:

- a packet that does not parse (bad JSON, JSON nested too deep, a binary
  placeholder that points nowhere) closes that client's session;
- an event must be ``[name, ...]`` with a string name, and not one of the
  names only the server raises (``RESERVED``);
- a binary packet may announce at most ``--max-attachments`` attachments, and
  they may add up to at most ``--max-payload`` bytes.

Each refusal is one log line, one count in ``wsk_protocol_errors_total`` and
the end of that client's session; nobody else notices.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from socketio import exceptions as sio_exceptions
from socketio import packet as sio_packet

from wsk.config import Config
from wsk.manager import ClusterManager, NotDelivered, RecoveryFailed
from wsk.metrics import Metrics
from wsk.transport.engine import EngineServer, session_environ
from wsk.transport.internals import SocketIOHooks

log = logging.getLogger("wsk.sessions")

# event names a client may not send: python-socketio and socket.io raise them
RESERVED = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
_ATTACHMENTS = re.compile(r"[56](\d+)-")
# why a client's transport went away, when its session should wait for it to come back
RECOVERABLE = frozenset({"transport close", "transport error", "ping timeout"})


class Refused(ValueError):
    """A Socket.IO packet the node does not take."""


class TryAgain(Exception):
    """A client's session cannot be looked up now; it must come back later."""


class SocketIOServer(SocketIOHooks):
    """python-socketio's Server on wsk's Engine.IO server, with the checks above and recovery.

    A client that connects to ``/`` gets a private session id (``pid``) in its
    CONNECT answer when ``--recovery-window`` is on; one that comes back with it
    (``auth = {pid, offset}``, as socket.io-client 4.6+ sends) gets its sid, rooms
    and session data back, on any node, and every event it missed after
    ``offset``, in order and once (``wsk.manager``, ``wsk.recovery``).
    """

    eio: EngineServer
    manager: ClusterManager

    def __init__(self, config: Config, metrics: Metrics, **kwargs: Any) -> None:
        self.config = config
        self.metrics = metrics
        # sids being restored now: the connect handler may want to know
        self.recovering: set[str] = set()
        self.engineio_server_class = functools.partial(EngineServer, config, metrics)
        super().__init__(
            async_mode="eventlet",
            cors_allowed_origins=_cors(config.cors_origins),
            logger=_library_logger("socketio.server", config.log_level),
            engineio_logger=_library_logger("engineio.server", config.log_level),
            **kwargs,
        )

    def session_environ(self, environ: dict[str, Any]) -> dict[str, Any]:
        # the session keeps a copy without the request's files and server objects
        return session_environ(environ)

    def check_message(self, eio_sid: str, data: str | bytes, pending: Any) -> None:
        if pending is not None:
            if not isinstance(data, bytes):
                raise Refused("a binary attachment was expected")
            if sum(map(len, pending.attachments)) + len(data) > self.config.max_payload:
                raise Refused(f"attachments over {self.config.max_payload} bytes")
            return
        if isinstance(data, bytes):
            raise Refused("a binary message that no packet announced")
        announced = _ATTACHMENTS.match(data)
        if announced and int(announced[1]) > self.config.max_attachments:
            raise Refused(f"more than {self.config.max_attachments} binary attachments")

    def check_event(self, data: Any) -> None:
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise Refused("an event is [name, ...] with a string name")
        if data[0] in RESERVED:
            raise Refused(f"{data[0]!r} is an event only the server raises")

    def refuse_message(self, eio_sid: str, error: Exception) -> None:
        why = str(error) if isinstance(error, Refused) else f"{type(error).__name__}: {error}"
        self.eio.refused("packet", eio_sid, f"malformed Socket.IO packet ({why[:200]})")
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None:
            sock.close(wait=False, abort=False, reason=self.reason.SERVER_DISCONNECT)

    # -- connecting, with connection-state recovery

    def connect_namespace(self, eio_sid: str, namespace: str, auth: Any) -> None:
        if namespace != "/":
            super().connect_namespace(eio_sid, namespace, auth)
            return
        manager = self.manager
        try:
            restored = self._claim(eio_sid, auth)
        except TryAgain:
            # Redis cannot say now whether the session is there: a new session would
            # lose it for good. The client is sent away, as a lost connection, and
            # comes back with its pid once Redis answers.
            self.send_away(eio_sid)
            return
        if self._left(eio_sid):
            # it went while Redis looked its session up: the session waits for it again
            if restored:
                manager.give_back(restored[0], eio_sid)
            return
        sid = restored[1].sid if restored else None
        if sid is not None and manager.is_connected(sid, namespace):
            # its old connection to this node is still open: the client has left it
            old = manager.eio_sid_from_sid(sid, namespace)
            log.info("client %s came back on a new connection; closing its old one", sid)
            self.eio.disconnect(old)
        sid = manager.pre_connect(eio_sid, namespace, sid)
        if sid is None:
            self._refuse(eio_sid, namespace, "Unable to connect")
            return
        start = manager.hold(sid)
        if restored:
            pid, record, after = restored
            manager.pids[sid] = pid
            for room in record.current_rooms:
                manager.enter_restored(sid, namespace, room, start)
            super().save_session(sid, record.data, namespace)
            self.recovering.add(sid)
        else:
            pid = manager.open_session(sid, eio_sid)
            if self._left(eio_sid):  # it went while Redis kept its new session
                manager.disconnect(sid, namespace, ignore_queue=True)
                manager.end_session(sid, eio_sid, recoverable=False)
                return
        try:
            accepted = self.call_connect_handler(namespace, sid, self.environ[eio_sid], auth)
            reason: Any = "Connection refused by server"
        except sio_exceptions.ConnectionRefusedError as exc:
            accepted, reason = False, exc.error_args
        finally:
            self.recovering.discard(sid)
        if accepted is False:
            self._refuse(eio_sid, namespace, reason)
            manager.disconnect(sid, namespace, ignore_queue=True)
            manager.end_session(sid, eio_sid, recoverable=False)
            return
        if self._speaks_v2(eio_sid):
            answer = None  # Socket.IO 2's CONNECT carries nothing
        else:
            answer = {"sid": sid, "pid": pid} if pid else {"sid": sid}
        self.send_socketio_packet(
            eio_sid, self.packet_class(sio_packet.CONNECT, answer, namespace=namespace)
        )
        manager.connect(sid, namespace)
        seen = start
        if restored:
            seen = max(after, start)
            try:
                replayed = manager.replay(sid, eio_sid, record, after, start)
            except Exception as exc:  # Redis went away mid-replay: it cannot be exact
                log.warning("replay to %s failed (%s); it will retry", sid, exc)
                self.metrics.recoveries.labels("failed", "redis").inc()
                self.send_away(eio_sid)  # its session waits for it, as claimed
                return
            self.metrics.recoveries.labels("succeeded", "").inc()
            self.metrics.replayed.inc(replayed)
            log.info(
                "client %s recovered: %d missed events replayed after %s", sid, replayed, after
            )
        manager.release(sid, eio_sid, seen)

    def _claim(self, eio_sid: str, auth: Any) -> tuple[str, Any, Any] | None:
        """The session a reconnecting client asks for, claimed for it; None for a new one."""
        if not isinstance(auth, dict) or "pid" not in auth or self.manager.sessions is None:
            return None
        self.metrics.recoveries_attempted.inc()
        try:
            record, after = self.manager.claim_session(auth["pid"], auth.get("offset"), eio_sid)
        except RecoveryFailed as exc:
            self.metrics.recoveries.labels("failed", exc.reason).inc()
            if exc.reason == "redis":
                log.info("a client's session cannot be looked up now (%s); it will retry", exc)
                raise TryAgain from None
            log.info("a client could not recover its session (%s: %s)", exc.reason, exc)
            return None
        return auth["pid"], record, after

    def _left(self, eio_sid: str) -> bool:
        """Whether a client's Engine.IO session ended (while its CONNECT waited on Redis)."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is None or sock.closed:
            log.debug("a client left before its connect was answered")
            return True
        return False

    def _speaks_v2(self, eio_sid: str) -> bool:
        """Whether a client speaks Engine.IO 3, hence Socket.IO 2 (socket.io-client 2.x)."""
        sock = self.eio.sockets.get(eio_sid)
        return bool(sock is not None and sock.eio3)

    def engineio_connected(self, eio_sid: str) -> None:
        # a Socket.IO 2 client is in the main namespace without asking
        if self._speaks_v2(eio_sid):
            self.connect_namespace(eio_sid, "/", None)

    def send_away(self, eio_sid: str) -> None:
        """Close a client's transport without a word, so that it reconnects (as a drain does)."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None:
            sock.close(wait=False, abort=True, reason=self.eio.reason.TRANSPORT_CLOSE)

    def _refuse(self, eio_sid: str, namespace: str, reason: Any) -> None:
        if self._speaks_v2(eio_sid):
            # Socket.IO 2's ERROR packet carries the message itself
            reason = reason.get("message", "refused") if isinstance(reason, dict) else reason
        self.send_socketio_packet(
            eio_sid,
            self.packet_class(sio_packet.CONNECT_ERROR, data=reason, namespace=namespace),
        )

    def session_ended(self, sid: str, reason: Any) -> None:
        """A client left ``/``: its session waits for it if it lost only its transport."""
        eio_sid = self.manager.eio_sid_from_sid(sid, "/")
        self.manager.end_session(sid, eio_sid or "", recoverable=reason in RECOVERABLE)

    def save_session(self, sid: str, session: dict[str, Any], namespace: str | None = None) -> None:
        """python-socketio's, and the session data goes to Redis for a recovery."""
        super().save_session(sid, session, namespace)
        if (namespace or "/") == "/":
            try:
                self.manager.save_data(sid, session)
            except Exception as exc:
                raise NotDelivered(f"the session could not be kept: {exc}") from None


def _library_logger(name: str, level: str) -> logging.Logger:
    """A python-socketio or python-engineio logger that logs through ours, once.

    Given no logger, those libraries add a handler of their own, which prints each
    line a second time beside the root handler's; and their info level is one line
    per packet. So: their warnings and errors, or everything with --log-level debug.
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    return logger


def _cors(origins: str | tuple[str, ...]) -> str | list[str]:
    return origins if isinstance(origins, str) else list(origins)
