"""One TLS socket for the two threads of python-engineio's client: one OpenSSL call at a time.

python-engineio's threaded client reads its websocket on one thread and writes it
on another. Over TLS both threads call into one OpenSSL connection, which is not
safe from two threads at once: ``SSL_read`` decides what went wrong from state that
a concurrent ``SSL_write`` has just changed, so a read that should have waited for
more bytes reports the end of the connection instead. The client then drops a
healthy connection. Seen as about 1 in 100 ``wss://`` connects through HAProxy
ending 1 ms after the server's OPEN packet, the Socket.IO CONNECT written while the
first read started (python-engineio issue 461; 4.15.1 has no fix). Node's
socket.io-client, on one event loop, never did it in the same runs.

``SerialTLS`` stands in for the websocket's ``ssl.SSLSocket``. The socket under it
is non-blocking; every OpenSSL call runs under one lock and returns at once;
waiting for the socket to be readable or writable happens outside the lock, so a
read that waits does not hold up a write. The timeout websocket-client sets is
kept and applied to the wait. A closed socket refuses every call with EBADF
before OpenSSL sees it: a thread that was waiting when another closed the socket
cannot read or write a later connection that was given the same descriptor.
"""

from __future__ import annotations

import errno
import selectors
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

Result = TypeVar("Result")


class SerialTLS:
    """An ``ssl.SSLSocket`` that two threads may read and write at once."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()
        self._lock = threading.Lock()
        self._closed = False
        sock.setblocking(False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def gettimeout(self) -> float | None:
        return self._timeout

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def setblocking(self, blocking: bool) -> None:
        self._timeout = None if blocking else 0.0

    def recv(self, size: int) -> bytes:
        return self._call(lambda: self._sock.recv(size))

    def send(self, data: bytes) -> int:
        return self._call(lambda: self._sock.send(data))

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self.send(view) :]

    def pending(self) -> int:
        with self._lock:
            return 0 if self._closed else self._sock.pending()

    def shutdown(self, how: int) -> None:
        with self._lock:
            self._sock.shutdown(how)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._sock.close()

    def _call(self, operation: Callable[[], Result]) -> Result:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            with self._lock:
                if self._closed:
                    raise OSError(errno.EBADF, "the socket is closed")
                try:
                    return operation()
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as want:
                    if self._timeout == 0:
                        raise
                    reading = isinstance(want, ssl.SSLWantReadError)
                    event = selectors.EVENT_READ if reading else selectors.EVENT_WRITE
                # still open, so still this connection's descriptor
                fd = self._sock.fileno()
            self._wait(fd, event, deadline)

    @staticmethod
    def _wait(fd: int, event: int, deadline: float | None) -> None:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise TimeoutError("timed out")
        with selectors.DefaultSelector() as selector:
            selector.register(fd, event)
            if not selector.select(timeout):
                raise TimeoutError("timed out")


def serialize(ws: Any) -> Any:
    """A websocket-client ``WebSocket`` whose TLS socket, if it has one, is a ``SerialTLS``."""
    sock = getattr(ws, "sock", None)
    if isinstance(sock, ssl.SSLSocket):
        ws.sock = SerialTLS(sock)
    return ws
