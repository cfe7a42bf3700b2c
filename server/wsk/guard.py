"""Bad input from one client gets a clean error and costs nobody else anything.

python-engineio and python-socketio answer most protocol errors well (an EIO=3
handshake, an unknown session id), but a few malformed inputs get a traceback in
the log, a response that claims success, or a request that never returns:

- a long-polling POST that is too large or carries an unknown packet type makes
  the Engine.IO server close the session and wait, without end, for a poll
  that will not come;
- a POST whose payload is not Engine.IO is logged as a traceback and answered
  200, as if it had been delivered;
- a websocket frame that is not Engine.IO escapes the handler: a traceback and
  an HTTP 500 written into the upgraded connection (``wsk.websocket`` now closes
  that websocket alone);
- a Socket.IO packet that does not parse is logged as a traceback and the
  client is left to wonder.

Here each such client gets a 4xx answer or its connection closed, with one line
in the log, and the node serves everyone else as before.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import engineio
import socketio
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from prometheus_client import Counter

from wsk.engine import EngineServer, session_environ

log = logging.getLogger("wsk.guard")


class BadPayload(ValueError):
    """A long-polling request body that the node refuses."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def read_polling_post(environ: dict[str, Any], max_payload: int) -> None:
    """Check the body of a long-polling POST; leave it readable again for Engine.IO.

    Raises BadPayload when the body is too large or is not an Engine.IO payload.
    """
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadPayload("400 Bad Request", "Content-Length is not a number") from None
    if length > max_payload:
        raise BadPayload("413 Content Too Large", f"payload over {max_payload} bytes")
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        packets = eio_payload.Payload(encoded_payload=body.decode("utf-8")).packets
    except (ValueError, KeyError, IndexError):
        raise BadPayload("400 Bad Request", "not an Engine.IO payload") from None
    for pkt in packets:
        if not 0 <= pkt.packet_type < len(eio_packet.packet_names):
            raise BadPayload("400 Bad Request", f"unknown packet type {pkt.packet_type}")


def close_session(eio: engineio.Server, sid: str, reason: str) -> None:
    """Close one Engine.IO session now, without waiting for its client to poll."""
    sock = eio.sockets.get(sid)
    if sock is not None:
        sock.close(wait=False, abort=False, reason=reason)


class GuardedServer(socketio.Server):
    """A Socket.IO server that closes a client sending packets it cannot parse.

    Its Engine.IO server is ``wsk.engine.EngineServer``.
    """

    eio: EngineServer

    def _engineio_server_class(self) -> type[engineio.Server]:
        return EngineServer

    def count_protocol_errors_in(self, counter: Counter) -> None:
        """Count every input refused for not following the protocol in ``counter``."""
        self.eio.protocol_errors = counter

    def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError) as exc:
            log.info("closing session %s: malformed Socket.IO packet (%s)", eio_sid, exc)
            self.eio.count_protocol_error()
            close_session(self.eio, eio_sid, self.reason.SERVER_DISCONNECT)

    def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        # the session keeps a copy without the request's files and server objects
        super()._handle_eio_connect(eio_sid, session_environ(environ))
