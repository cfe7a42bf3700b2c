"""The node's HTTP surface: health and metrics first, then the live page, then Socket.IO.

``/healthz``, ``/healthz/redis`` and ``/metrics`` are answered before Socket.IO sees
the request, so they work even when Socket.IO is served at ``/``; so is a browser's
request for the live page (``wsk.page``: at the Socket.IO path, without ``EIO`` in its
query). A full node (``wsk.transport.http``) answers every request it takes past its
limit with a 503, ``/healthz`` included.

Two health answers, for two questions. ``/healthz`` is "this process can serve": 200
unless it drains or is full, whatever Redis does, since a node whose Redis is away
still serves its own clients (HAProxy checks it: a Redis problem that every node shares
must not take every node out). ``/healthz/redis`` is "this process reaches Redis": 503
while it does not (as is the metric ``wsk_redis_up``), for monitoring and alerts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import socketio

from wsk.config import Config
from wsk.health import RedisMonitor
from wsk.metrics import CONTENT_TYPE, Metrics
from wsk.page import Page
from wsk.transport.http import CLOSE_KEY, FULL_KEY

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class NodeApp:
    """The WSGI application of one node."""

    def __init__(
        self, config: Config, sio: socketio.Server, monitor: RedisMonitor, metrics: Metrics
    ) -> None:
        self.socketio_app = socketio.WSGIApp(sio, socketio_path=config.path)
        self.config = config
        self.sio = sio
        self.monitor = monitor
        self.metrics = metrics
        self.page = Page(config)
        self.draining = False

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get(FULL_KEY):
            environ[CLOSE_KEY]()
            if path == "/healthz":
                return self.healthz(start_response, full=True)
            return _json(start_response, "503 Service Unavailable", {"error": "node is full"})
        if path == "/healthz":
            return self.healthz(start_response)
        if path == "/healthz/redis":
            return self.healthz_redis(start_response)
        if path == "/metrics":
            body = self.metrics.render()
            start_response("200 OK", [("Content-Type", CONTENT_TYPE), _length(body)])
            return [body]
        if self.draining and "sid=" not in environ.get("QUERY_STRING", ""):
            # a new session would be cut short: send the client elsewhere
            return _json(start_response, "503 Service Unavailable", {"error": "node is draining"})
        if self.page.answers(environ):
            return self.page(environ, start_response)
        return self.socketio_app(environ, start_response)

    def healthz(self, start_response: StartResponse, full: bool = False) -> Iterable[bytes]:
        """200 while the process can serve (it neither drains nor is full), 503 otherwise.

        Redis's state is in the body, but not in the status: see ``healthz_redis``.
        """
        healthy = not self.draining and not full
        status = "ok" if healthy else ("full" if full else "unavailable")
        body = {
            "status": status,
            "node": self.config.node_name,
            "redis": "up" if self.monitor.up else f"down: {self.monitor.error}",
            "draining": self.draining,
            "full": full,
            "clients": len(self.sio.eio.sockets),
        }
        code = "200 OK" if healthy else "503 Service Unavailable"
        return _json(start_response, code, body)

    def healthz_redis(self, start_response: StartResponse) -> Iterable[bytes]:
        """200 while the process reaches Redis (its last ping, at most a second old), else 503."""
        body = {
            "status": "ok" if self.monitor.up else "unavailable",
            "node": self.config.node_name,
            "redis": "up" if self.monitor.up else f"down: {self.monitor.error}",
        }
        code = "200 OK" if self.monitor.up else "503 Service Unavailable"
        return _json(start_response, code, body)


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status,
        [("Content-Type", "application/json"), ("Cache-Control", "no-store"), _length(data)],
    )
    return [data]


def _length(body: bytes) -> tuple[str, str]:
    return ("Content-Length", str(len(body)))
