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
  an HTTP 500 written into the upgraded connection;
- a Socket.IO packet that does not parse is logged as a traceback and the
  client is left to wonder.

Here each such client gets a 4xx answer or its connection closed, with one line
in the log, and the node serves everyone else as before.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

import engineio
import socketio
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from engineio.async_drivers.eventlet import WebSocketWSGI
from prometheus_client import Counter

from wsk import fanout

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


class GuardedWebSocketWSGI(WebSocketWSGI):
    """Engine.IO's eventlet websocket, closed cleanly when a frame is not Engine.IO."""

    def __init__(self, handler: Callable[[Any], Any], server: engineio.Server) -> None:
        owner = getattr(handler, "__self__", None)

        def guarded(ws: Any) -> Any:
            # the handler writes through the wrapper, which also lets a broadcast
            # write to this client directly (wsk.fanout) while the websocket lasts
            fast = fanout.FanoutWebSocket(ws)
            if owner is not None:
                setattr(owner, fanout.WEBSOCKET_ATTR, fast)
            try:
                return handler(fast)
            except ValueError as exc:
                log.info("closing websocket %s: %s", getattr(owner, "sid", "?"), exc)
                server.count_protocol_error()
                if owner is not None:
                    owner.close(wait=False, abort=True, reason=server.reason.TRANSPORT_ERROR)
                return []  # eventlet then closes the websocket with a close frame
            finally:
                if owner is not None:
                    setattr(owner, fanout.WEBSOCKET_ATTR, None)

        super().__init__(guarded, server)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # eventlet writes its websocket errors (a shutdown of a socket the peer
        # already closed, say) to wsgi.errors, without a newline: to the log instead
        environ["wsgi.errors"] = _DebugLog()
        return super().__call__(environ, start_response)


class _DebugLog:
    """A file-like object whose writes become debug log lines."""

    def write(self, text: str) -> None:
        if text.strip():
            log.debug("eventlet: %s", text.strip())

    def flush(self) -> None:
        pass


class GuardedEngineIOServer(engineio.Server):
    """An Engine.IO server whose websockets are guarded and whose disconnects never block."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._async = {**self._async, "websocket": GuardedWebSocketWSGI}
        self.protocol_errors: Counter | None = None

    def count_protocol_error(self) -> None:
        """Count one input refused for not following the protocol."""
        if self.protocol_errors is not None:
            self.protocol_errors.inc()

    def send_packet(self, sid: str, pkt: Any) -> None:
        """Send a packet to a client: straight onto its websocket when it can (wsk.fanout)."""
        if not fanout.send_packet(self, sid, pkt):
            super().send_packet(sid, pkt)

    def disconnect(self, sid: str | None = None) -> None:
        """Close one session, or all of them, without waiting for their clients."""
        sids = [sid] if sid is not None else list(self.sockets)
        for one in sids:
            sock = self.sockets.pop(one, None)
            if sock is not None:
                sock.close(wait=False, reason=self.reason.SERVER_DISCONNECT)


class GuardedServer(socketio.Server):
    """A Socket.IO server that closes a client sending packets it cannot parse."""

    eio: GuardedEngineIOServer

    def _engineio_server_class(self) -> type[engineio.Server]:
        return GuardedEngineIOServer

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
