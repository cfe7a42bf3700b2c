"""The node's HTTP server: eventlet's WSGI request handling, with connections that can leave it.

A websocket outlives the HTTP request that opened it. eventlet's server keeps
that request's greenthread, its handler, its 24 KiB of read and write buffers
and its environ for as long as the websocket lasts. Here the WSGI application
may instead *detach* the connection: ``environ["wsk.detach"]()`` returns the
socket and a function to call once it is closed. The request ends, everything
it held is freed, and the socket stays open for whoever took it
(``wsk.websocket``).

The accept loop is eventlet's, rewritten around that: ``max_connections`` counts
every open client connection, detached or not, so that a full node stops
accepting instead of running out of descriptors.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Callable
from typing import Any

import eventlet
import eventlet.wsgi
from eventlet import greenio
from eventlet.semaphore import Semaphore

log = logging.getLogger("wsk.http")

DETACH_KEY = "wsk.detach"

# accept() errors after which the node goes on accepting
OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
PEER_GAVE_UP = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.ECONNRESET, errno.EINTR})


class Connection(list):
    """eventlet's connection state, ``[address, socket, state]``, and whether it was detached."""

    detached = False


class Limit:
    """How many client connections the node holds, at most ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._slots = Semaphore(size)

    def acquire(self) -> None:
        """Take a slot; wait while the node is full."""
        self._slots.acquire()

    def release(self) -> None:
        """Give a slot back when a connection closes."""
        self._slots.release()

    @property
    def held(self) -> int:
        """Connections open now."""
        return self.size - self._slots.balance


class Protocol(eventlet.wsgi.HttpProtocol):
    """eventlet's request handler, whose request may detach the connection."""

    conn_state: Connection

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[DETACH_KEY] = self._detach
        return environ

    def _detach(self) -> tuple[greenio.GreenSocket, Callable[[], None]]:
        """Hand the socket over after this request; the taker calls ``closed()`` once it closes it.

        No more requests are read from the connection.
        """
        self.conn_state.detached = True
        self.close_connection = True
        return self.connection, self.server.limit.release

    def finish(self) -> None:
        # the environ refers back to this handler (eventlet's set_idle, our detach):
        # break the cycle, so that the buffers go when the request does, not at the
        # next garbage collection
        environ = getattr(self, "environ", None)
        if environ is not None:
            environ.pop(DETACH_KEY, None)
            environ.pop("eventlet.set_idle", None)
        if not self.conn_state.detached:
            super().finish()
            return
        # flush and close the buffered files; the socket itself stays open
        with contextlib.suppress(OSError):
            eventlet.wsgi.BaseHTTPServer.BaseHTTPRequestHandler.finish(self)


def serve(
    listener: greenio.GreenSocket,
    app: Callable[..., Any],
    limit: Limit,
    log_output: bool = False,
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
        log_output=log_output,
        debug=False,
    )
    server.limit = limit
    connections: dict[Any, Connection] = {}
    handlers: set[eventlet.GreenThread] = set()

    def done(thread: eventlet.GreenThread, conn: Connection) -> None:
        handlers.discard(thread)
        connections.pop(conn[0], None)
        if conn.detached:
            return
        conn[2] = eventlet.wsgi.STATE_CLOSE
        greenio.shutdown_safe(conn[1])
        conn[1].close()
        limit.release()

    try:
        while True:
            limit.acquire()
            try:
                client, address = listener.accept()
            except OSError as exc:
                limit.release()
                if exc.errno in OUT_OF_RESOURCES:
                    # the clients in the backlog wait; refusing them would not free anything
                    log.warning("cannot accept connections: %s; retrying in 1 s", exc)
                    eventlet.sleep(1)
                    continue
                if exc.errno in PEER_GAVE_UP:
                    continue
                raise  # the listener was closed
            except BaseException:
                limit.release()
                raise
            conn = Connection([address, client, eventlet.wsgi.STATE_IDLE])
            connections[address] = conn
            thread = eventlet.spawn(server.process_request, conn)
            handlers.add(thread)
            thread.link(done, conn)
    except (KeyboardInterrupt, SystemExit, OSError) as exc:
        log.info("no longer accepting connections (%s)", type(exc).__name__)
    finally:
        for conn in list(connections.values()):
            state = conn[2]
            conn[2] = eventlet.wsgi.STATE_CLOSE
            if state == eventlet.wsgi.STATE_IDLE and not conn.detached:
                greenio.shutdown_safe(conn[1])
        for thread in list(handlers):
            try:
                thread.wait()
            except Exception:
                log.debug("a request ended with an error", exc_info=True)
