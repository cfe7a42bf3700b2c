"""The node's HTTP surface: health and metrics first, then Socket.IO.

``/healthz`` and ``/metrics`` are answered before Socket.IO sees the request, so
they work even when Socket.IO is served at ``/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import socketio

from wsk.guard import BadPayload, close_session, read_polling_post
from wsk.health import RedisMonitor
from wsk.metrics import CONTENT_TYPE, Metrics

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class NodeApp:
    """The WSGI application of one node."""

    def __init__(
        self,
        sio: socketio.Server,
        path: str,
        node_name: str,
        monitor: RedisMonitor,
        metrics: Metrics,
        max_payload: int,
    ) -> None:
        self.socketio_app = socketio.WSGIApp(sio, socketio_path=path)
        self.sio = sio
        self.node_name = node_name
        self.monitor = monitor
        self.metrics = metrics
        self.max_payload = max_payload
        self.draining = False

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return self.healthz(start_response)
        if path == "/metrics":
            body = self.metrics.render()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE), _length(body)])
            return [body]
        sid = _session_id(environ)
        if sid is None and self.draining:
            # a new session would be cut short: send the client elsewhere
            return _json(start_response, "503 Service Unavailable", {"error": "node is draining"})
        if sid is not None and environ.get("REQUEST_METHOD") == "POST":
            try:
                read_polling_post(environ, self.max_payload)
            except BadPayload as exc:
                self.sio.eio.count_protocol_error()
                close_session(self.sio.eio, sid, self.sio.reason.SERVER_DISCONNECT)
                return _json(start_response, exc.status, {"error": exc.reason})
        return self.socketio_app(environ, start_response)

    def healthz(self, start_response: StartResponse) -> Iterable[bytes]:
        """200 while the node serves and reaches Redis, 503 otherwise."""
        healthy = self.monitor.up and not self.draining
        body = {
            "status": "ok" if healthy else "unavailable",
            "node": self.node_name,
            "redis": "up" if self.monitor.up else f"down: {self.monitor.error}",
            "draining": self.draining,
            "clients": len(self.sio.eio.sockets),
        }
        status = "200 OK" if healthy else "503 Service Unavailable"
        return _json(start_response, status, body)


def _session_id(environ: dict[str, Any]) -> str | None:
    """The Engine.IO session a request belongs to; None for a handshake."""
    query = environ.get("QUERY_STRING", "")
    if "sid=" not in query:
        return None
    return parse_qs(query).get("sid", [None])[0]


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Cache-Control", "no-store"), _length(data)],
    )
    return [data]


def _length(body: bytes) -> tuple[str, str]:
    return ("Content-Length", str(len(body)))
