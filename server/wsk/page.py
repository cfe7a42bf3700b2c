"""The live page: a node answers a browser's ``GET <path>`` with HTML that watches the cluster.

A request at the Socket.IO path (``--path``) that is not Engine.IO (no ``EIO`` in its
query) gets the page; ``<path>?asset=<name>`` gets one of the files it loads. Everything
ships inside the package, in ``wsk/static/``: the page, its script and style, and
socket.io-client's browser bundle, copied from the npm package by
``scripts/vendor-web.sh`` and committed. A deploy needs no Node, no CDN, no build step.

The assets are named in the query, not in a path below the page, so that a relative
``?asset=...`` resolves to the page's own path whatever public prefix a proxy serves it
at (``/wsk`` or ``/wsk/`` through HAProxy's rewrite, ``/`` on a node directly); the
script derives the Socket.IO path from ``location.pathname`` the same way. The page
loads nothing from elsewhere, and its Content-Security-Policy says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from wsk.config import Config

StartResponse = Callable[..., Any]

# what ?asset= may name: file -> content type
ASSETS = {
    "page.js": "text/javascript; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "socket.io.min.js": "text/javascript; charset=utf-8",
}
HTML = "text/html; charset=utf-8"
# websockets to the page's own origin: 'self' covers ws: and wss: in CSP Level 3 browsers only
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _read(name: str) -> bytes:
    return resources.files("wsk").joinpath("static", name).read_bytes()


class Page:
    """The page and its assets, read once from the package."""

    def __init__(self, config: Config) -> None:
        path = config.path if config.path.endswith("/") else config.path + "/"
        self.paths = {path, path.rstrip("/") or "/"}
        # a node that stopped beating is late after the longest gap between two heartbeats
        heartbeat = config.heartbeat_interval + config.heartbeat_jitter
        html = _read("index.html").decode().replace("{{heartbeat}}", f"{heartbeat:g}")
        self.html = html.encode()
        self.assets = {name: _read(name) for name in ASSETS}

    def answers(self, environ: dict[str, Any]) -> bool:
        """True for a GET or HEAD at the page's path that is not an Engine.IO request."""
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return False
        if environ.get("PATH_INFO", "") not in self.paths:
            return False
        return "EIO" not in parse_qs(environ.get("QUERY_STRING", ""))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        asset = parse_qs(environ.get("QUERY_STRING", "")).get("asset")
        if asset is None:
            body, kind = self.html, HTML
        elif asset[0] in self.assets:
            body, kind = self.assets[asset[0]], ASSETS[asset[0]]
        else:
            body, kind = b"no such asset\n", "text/plain; charset=utf-8"
            start_response("404 Not Found", self._headers(kind, body, "no-store"))
            return [body]
        # the page is small and changes with each release: revalidate rather than cache long
        start_response("200 OK", self._headers(kind, body, "no-cache"))
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    @staticmethod
    def _headers(kind: str, body: bytes, cache: str) -> list[tuple[str, str]]:
        return [
            ("Content-Type", kind),
            ("Content-Length", str(len(body))),
            ("Cache-Control", cache),
            ("Content-Security-Policy", POLICY),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
        ]
