"""The node's HTTP server: eventlet's request handling, with deadlines, a full-node answer,
and connections that can leave it.

A websocket outlives the HTTP request that opened it. eventlet's server keeps
that request's greenthread, its handler, its 24 KiB of read and write buffers
and its environ for as long as the websocket lasts. Here the WSGI application
may instead *detach* the connection: ``environ[DETACH_KEY]()`` returns the
socket and a function to call once it is closed. The request ends, everything
it held is freed, and the socket stays open for whoever took it
(``wsk.transport.websocket``).

eventlet's server has no deadline of its own: a client that sends one header
byte every few seconds, or nothing at all, holds its connection for as long as
it likes. Here every request must arrive whole (request line, headers and, for
a long-polling POST, its body) within ``--request-timeout`` seconds of the
connection's first byte being awaited, as HAProxy's ``timeout http-request``
does; an idle keep-alive connection gets the same time for its next request.
A connection that does not make it is answered 408 and closed.

The accept loop is eventlet's, rewritten around that. ``Limit`` counts every open
client connection, detached or not, so that a full node stops accepting instead
of running out of descriptors; but a few more connections are still taken and
answered at once with a 503 (``/healthz`` included), so that a full node says
so instead of leaving health checks and new clients in the listen backlog.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import eventlet
import eventlet.wsgi
from eventlet import greenio
from eventlet.semaphore import Semaphore

from wsk.transport import internals

if TYPE_CHECKING:
    from wsk.config import Config
    from wsk.metrics import Metrics

log = logging.getLogger("wsk.http")

DETACH_KEY = "wsk.detach"
# the request's Deadline, while its body is still to be read: ``met()`` once it is
DEADLINE_KEY = "wsk.deadline"
# call it to close the connection after this response (its body was not read)
CLOSE_KEY = "wsk.close"
# True in the environ of a request the node takes only to answer that it is full
FULL_KEY = "wsk.full"

# most bytes the request's reader may hold beyond a request that detaches
READ_AHEAD = 64 * 1024
# connections a full node still takes, to answer them with a 503 at once
OVERFLOW = 32
# seconds a connection taken only to be told that the node is full may take to ask
OVERFLOW_DEADLINE = 2.0

# accept() errors after which the node goes on accepting: out of resources (wait,
# then retry), or an error of the connection being accepted, not of the listener
# (accept(2): "treat them like EAGAIN by retrying")
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RETRYABLE = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.ECONNRESET,
        errno.EINTR,
        errno.EAGAIN,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
        errno.EPERM,
        errno.ETIMEDOUT,
    }
)


class Connection(list):
    """eventlet's connection state, ``[address, socket, state]``, and what wsk adds to it."""

    detached = False
    overflow = False  # taken past the limit, to be answered 503


class Limit:
    """How many client connections the node holds, at most ``size``, plus a few to refuse."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots = Semaphore(size)
        self._overflow = Semaphore(OVERFLOW)

    def acquire(self) -> bool:
        """Take a slot: True for a connection to serve, False for one to answer 503.

        Waits while the node is full and already answering OVERFLOW refusals.
        """
        if self._slots.acquire(blocking=False):
            return True
        if self._overflow.acquire(blocking=False):
            return False
        self._slots.acquire()
        return True

    def release(self, served: bool = True) -> None:
        """Give a slot back when a connection closes."""
        (self._slots if served else self._overflow).release()

    @property
    def held(self) -> int:
        """Connections served now."""
        return self.size - self._slots.balance

    @property
    def full(self) -> bool:
        return self._slots.balance <= 0


class Deadline:
    """The time one request has to arrive whole; it closes the connection when it passes."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.timer = eventlet.Timeout(seconds)

    def met(self) -> None:
        self.timer.cancel()

    def passed(self, exc: BaseException) -> bool:
        return exc is self.timer


class Protocol(eventlet.wsgi.HttpProtocol):
    """eventlet's request handler, with a deadline per request and a detachable connection."""

    conn_state: Connection
    deadline: Deadline | None = None
    served = 0  # requests this connection has had answered

    def handle_one_request(self) -> None:
        server = self.server
        seconds = OVERFLOW_DEADLINE if self.conn_state.overflow else server.config.request_timeout
        self.deadline = deadline = Deadline(seconds)
        self.raw_requestline = b""  # http.server's: the request line, once read
        try:
            super().handle_one_request()
            self.served += 1
        except eventlet.Timeout as exc:
            if not deadline.passed(exc):
                raise
            self._timed_out(seconds)
        finally:
            deadline.met()

    def _timed_out(self, seconds: float) -> None:
        """Tell a client that did not send its request in time, and close its connection.

        A keep-alive connection that was only idle after its last answer (HAProxy
        keeps some ready) is closed without a word: a 408 there could be read as
        the answer to a request that crosses it.
        """
        self.close_connection = 1
        if self.conn_state.detached:
            return
        metrics = self.server.metrics
        if self.served and not self._started_another():
            log.debug("closing an idle keep-alive connection after %g s", seconds)
            if metrics is not None:
                metrics.idle_connections_closed.inc()
            return
        peer = self.client_address[0] if self.client_address else "?"
        log.info("closing a connection from %s: no complete request within %g s", peer, seconds)
        if metrics is not None:
            metrics.connections_refused.labels("request_timeout").inc()
        with contextlib.suppress(OSError):
            self.connection.setblocking(False)
            self.connection.send(
                b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            )

    def _started_another(self) -> bool:
        """Whether any byte of a next request arrived: its request line, or what the
        request reader holds of it."""
        if self.raw_requestline:
            return True
        try:
            self.connection.setblocking(False)
            return bool(self.rfile.peek(1))
        except (OSError, ValueError):
            return False

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[DETACH_KEY] = self._detach
        environ[CLOSE_KEY] = self._close_after
        if self.conn_state.overflow:
            environ[FULL_KEY] = True
        has_body = environ.get("CONTENT_LENGTH", "0") not in ("", "0") or (
            environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
        )
        if has_body and self.deadline is not None:
            environ[DEADLINE_KEY] = self.deadline
        elif self.deadline is not None:
            self.deadline.met()  # the request is in
        return environ

    def _close_after(self) -> None:
        self.close_connection = 1

    def _detach(self) -> tuple[greenio.GreenSocket, Callable[[], None], bytes]:
        """Hand the socket over after this request: it, a function to call once it is closed,
        and what the client sent after the request that the request's reader holds already
        (a client may send its first frames without waiting for the handshake's answer).

        No more requests are read from the connection.
        """
        self.conn_state.detached = True
        self.close_connection = True
        self.connection.setblocking(False)
        try:
            # what is buffered, or what one non-blocking read finds: never waits
            early = self.rfile.peek(READ_AHEAD)
        except OSError:
            early = b""
        return self.connection, self.server.limit.release, early

    def finish(self) -> None:
        # the environ refers back to this handler (eventlet's set_idle, our hooks):
        # break the cycle, so that the buffers go when the request does, not at the
        # next garbage collection
        environ = getattr(self, "environ", None)
        if environ is not None:
            for key in (DETACH_KEY, CLOSE_KEY, DEADLINE_KEY, "eventlet.set_idle"):
                environ.pop(key, None)
        self.deadline = None
        if not self.conn_state.detached:
            super().finish()
            return
        # flush and close the buffered files; the socket itself stays open
        with contextlib.suppress(OSError):
            http.server.BaseHTTPRequestHandler.finish(self)


def serve(
    listener: greenio.GreenSocket,
    app: Callable[..., Any],
    limit: Limit,
    config: Config,
    metrics: Metrics | None = None,
) -> None:
    """Accept and serve connections until killed; then wait for the requests in progress.

    Killing this greenthread (the node sends KeyboardInterrupt) stops the
    accepting, shuts idle keep-alive connections and waits for busy ones, as
    eventlet's own server does. Detached connections are their new owner's.
    """
    server = eventlet.wsgi.Server(
        listener,
        listener.getsockname(),
        app,
        log,
        protocol=Protocol,
        log_output=config.log_level == "debug",
        debug=False,
    )
    server.limit = limit
    server.config = config
    server.metrics = metrics
    connections: dict[Any, Connection] = {}
    handlers: set[eventlet.GreenThread] = set()

    def done(thread: eventlet.GreenThread, conn: Connection) -> None:
        handlers.discard(thread)
        connections.pop(conn[0], None)
        if conn.detached:
            return
        conn[2] = internals.STATE_CLOSE
        greenio.shutdown_safe(conn[1])
        conn[1].close()
        limit.release(served=not conn.overflow)

    try:
        while True:
            served = limit.acquire()
            try:
                client, address = listener.accept()
            except OSError as exc:
                limit.release(served)
                if exc.errno in OUT_OF_RESOURCES:
                    # the clients in the backlog wait; refusing them would not free anything
                    log.warning("cannot accept connections: %s; retrying in 1 s", exc)
                    eventlet.sleep(1)
                    continue
                if exc.errno in RETRYABLE:
                    log.debug("accept() failed for one connection: %s", exc)
                    continue
                raise  # the listener was closed
            except BaseException:
                limit.release(served)
                raise
            conn = Connection([address, client, internals.STATE_IDLE])
            if not served:
                conn.overflow = True
                if metrics is not None:
                    metrics.connections_refused.labels("full").inc()
            connections[address] = conn
            thread = eventlet.spawn(server.process_request, conn)
            handlers.add(thread)
            thread.link(done, conn)
    except (KeyboardInterrupt, SystemExit, OSError) as exc:
        log.info("no longer accepting connections (%s)", type(exc).__name__)
    finally:
        for conn in list(connections.values()):
            state = conn[2]
            conn[2] = internals.STATE_CLOSE
            if state == internals.STATE_IDLE and not conn.detached:
                greenio.shutdown_safe(conn[1])
        for thread in list(handlers):
            try:
                thread.wait()
            except Exception:
                log.debug("a request ended with an error", exc_info=True)
