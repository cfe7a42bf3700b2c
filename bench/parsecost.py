"""What parsing a websocket connect's HTTP request costs: Python's parser, and httptools.

A wsk node parses requests as eventlet does, with ``http.server``'s ``parse_request``
(the request line, then the headers through ``email``'s parser). Issue 13 names
httptools, the C parser uvicorn uses, as the candidate for cheaper connects. This
measures both on the requests a websocket connect brings (from socket.io-client and
from a browser, each as HAProxy forwards it), in this process, so that W4 can say what
share of a connect's server CPU a parser is, and what httptools would save of it.
"""

from __future__ import annotations

import http.server
import io
import time
from collections.abc import Callable

import httptools

_COMMON = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Connection: Upgrade\r\n"
    b"Upgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
)
_FORWARDED = b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n\r\n"
_BROWSER = (
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Origin: https://app.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/120.0.0.0 Safari/537.36\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-GB,en;q=0.9\r\n"
    b"Cookie: WSKID=node1; session=0123456789abcdef\r\n"
)
REQUESTS = {
    "socket.io-client": _COMMON + _FORWARDED,
    "browser": _COMMON + _BROWSER + _FORWARDED,
}
ROUNDS = 5
PER_ROUND = 20_000


class _Stdlib(http.server.BaseHTTPRequestHandler):
    """``parse_request`` on bytes, without a connection (what eventlet's handler calls)."""

    def __init__(self, request: bytes) -> None:
        self.rfile = io.BytesIO(request)
        self.raw_requestline = self.rfile.readline(65537)
        self.request_version = "HTTP/0.9"
        self.close_connection = True


def parse_stdlib(request: bytes) -> list[tuple[str, str]]:
    """The request's headers as eventlet's server gets them."""
    handler = _Stdlib(request)
    if not handler.parse_request():
        raise ValueError("http.server refused the request")
    return list(handler.headers.items())


class _Headers:
    __slots__ = ("complete", "headers", "url")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


def parse_httptools(request: bytes) -> list[tuple[bytes, bytes]]:
    """The request's headers from httptools (an upgrade stops it after them)."""
    found = _Headers()
    parser = httptools.HttpRequestParser(found)
    try:  # noqa: SIM105 (contextlib.suppress would add its own cost to what is timed)
        parser.feed_data(request)
    except httptools.HttpParserUpgrade:
        pass  # a websocket request: what follows is the upgraded stream's
    if not found.complete:
        raise ValueError("httptools did not complete the request")
    return found.headers


def _us_per_call(parse: Callable[[bytes], object], request: bytes) -> float:
    for _ in range(PER_ROUND // 10):
        parse(request)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(PER_ROUND):
            parse(request)
        best = min(best, (time.process_time() - started) / PER_ROUND * 1e6)
    return round(best, 2)


def parse_costs() -> dict[str, dict[str, float]]:
    """CPU µs per request for each parser and request (the best of a few rounds)."""
    costs = {}
    for name, request in REQUESTS.items():
        if len(parse_stdlib(request)) != len(parse_httptools(request)):
            raise ValueError(f"the parsers disagree on the {name} request's headers")
        costs[name] = {
            "stdlib_us": _us_per_call(parse_stdlib, request),
            "httptools_us": _us_per_call(parse_httptools, request),
        }
    return costs
