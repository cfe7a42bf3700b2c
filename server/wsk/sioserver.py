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

from wsk.config import Config
from wsk.metrics import Metrics
from wsk.transport.engine import EngineServer, session_environ
from wsk.transport.internals import SocketIOHooks

# event names a client may not send: python-socketio and socket.io raise them
RESERVED = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
_ATTACHMENTS = re.compile(r"[56](\d+)-")


class Refused(ValueError):
    """A Socket.IO packet the node does not take."""


class SocketIOServer(SocketIOHooks):
    """python-socketio's Server on wsk's Engine.IO server, with the checks above."""

    eio: EngineServer

    def __init__(self, config: Config, metrics: Metrics, **kwargs: Any) -> None:
        self.config = config
        self.metrics = metrics
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
