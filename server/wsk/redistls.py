"""TLS connections to Redis that share one SSLContext per set of TLS settings.

redis-py's ``SSLConnection`` builds a new ``ssl.SSLContext`` for every connection
it opens, with ``ssl.create_default_context()``, which parses the system's whole
CA store: 51 ms of CPU per connection on the test machines (55-62 ms with the
handshake and a PING), spent in the node's one hub thread, where every client
waits for it. A node opens connections in bursts, when clients need it most: a
pool grows when many clients recover at once (a rolling restart sends one
process's clients to another), and every connection is opened again after Redis
restarts or fails over.

``SharedContextSSLConnection`` builds the context once for each distinct set of
TLS settings, the way redis-py builds it (the system's CAs, then the configured
ones), and hands it to every connection with those settings: a new connection
and its PING then cost about 6 ms of CPU. The context reads the CA and
certificate files when it is built; a file replaced in place is read at the next
start (the socketio role restarts the nodes when it changes the CA).

It overrides redis-py's private ``SSLConnection._wrap_socket_with_ssl`` and reads
the settings redis-py keeps on the connection (``ca_certs``, ``cert_reqs``, ...).
Both are redis-py's internals, checked at import against the versions wsk was
tested with (``wsk.transport.versions.TESTED``). OCSP validation, which wsk does
not configure, is left to redis-py's own path.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

import redis

from wsk.transport.versions import TESTED, check_versions

check_versions({"redis": TESTED["redis"]})

_contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}
_lock = threading.Lock()


def _settings(conn: redis.SSLConnection) -> tuple[Any, ...]:
    """What a connection's context is made of: equal settings, one context."""
    return (
        conn.check_hostname,
        conn.cert_reqs,
        tuple(conn.ssl_include_verify_flags or ()),
        tuple(conn.ssl_exclude_verify_flags or ()),
        conn.certfile,
        conn.keyfile,
        conn.certificate_password,
        conn.ca_certs,
        conn.ca_path,
        conn.ca_data,
        conn.ssl_min_version,
        conn.ssl_ciphers,
    )


def _build(conn: redis.SSLConnection) -> ssl.SSLContext:
    """A context with a connection's settings, made as redis-py makes its own."""
    context = ssl.create_default_context()
    context.check_hostname = conn.check_hostname
    context.verify_mode = conn.cert_reqs
    for flag in conn.ssl_include_verify_flags or ():
        context.verify_flags |= flag
    for flag in conn.ssl_exclude_verify_flags or ():
        context.verify_flags &= ~flag
    if conn.certfile or conn.keyfile:
        context.load_cert_chain(
            certfile=conn.certfile, keyfile=conn.keyfile, password=conn.certificate_password
        )
    authorities = {"cafile": conn.ca_certs, "capath": conn.ca_path, "cadata": conn.ca_data}
    if any(value is not None for value in authorities.values()):
        context.load_verify_locations(**authorities)
    if conn.ssl_min_version is not None:
        context.minimum_version = conn.ssl_min_version
    if conn.ssl_ciphers:
        context.set_ciphers(conn.ssl_ciphers)
    return context


def shared_context(conn: redis.SSLConnection) -> ssl.SSLContext:
    """The one context for ``conn``'s TLS settings, built at its first connection."""
    key = _settings(conn)
    with _lock:
        context = _contexts.get(key)
        if context is None:
            context = _contexts[key] = _build(conn)
        return context


class SharedContextSSLConnection(redis.SSLConnection):
    """redis-py's TLS connection, on the context its settings share (see the module)."""

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> ssl.SSLSocket:
        if self.ssl_validate_ocsp or self.ssl_validate_ocsp_stapled:
            return super()._wrap_socket_with_ssl(sock)
        return shared_context(self).wrap_socket(sock, server_hostname=self.host)
