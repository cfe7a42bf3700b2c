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

import functools
import socket
import ssl
from typing import Any, NamedTuple

import redis

from wsk.transport.versions import TESTED, check_versions

check_versions({"redis": TESTED["redis"]})


class Settings(NamedTuple):
    """What a connection's context is made of: equal settings, one context."""

    check_hostname: bool
    cert_reqs: Any
    include_flags: tuple[Any, ...]
    exclude_flags: tuple[Any, ...]
    certfile: Any
    keyfile: Any
    password: Any
    cafile: Any
    capath: Any
    cadata: Any
    min_version: Any
    ciphers: Any

    @classmethod
    def of(cls, conn: redis.SSLConnection) -> Settings:
        return cls(
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


@functools.cache
def shared_context(settings: Settings) -> ssl.SSLContext:
    """The one context for these settings, made as redis-py makes its own, at first use."""
    context = ssl.create_default_context()
    context.check_hostname = settings.check_hostname
    context.verify_mode = settings.cert_reqs
    for flag in settings.include_flags:
        context.verify_flags |= flag
    for flag in settings.exclude_flags:
        context.verify_flags &= ~flag
    if settings.certfile or settings.keyfile:
        context.load_cert_chain(settings.certfile, settings.keyfile, settings.password)
    if (settings.cafile, settings.capath, settings.cadata) != (None, None, None):
        context.load_verify_locations(settings.cafile, settings.capath, settings.cadata)
    if settings.min_version is not None:
        context.minimum_version = settings.min_version
    if settings.ciphers:
        context.set_ciphers(settings.ciphers)
    return context


class SharedContextSSLConnection(redis.SSLConnection):
    """redis-py's TLS connection, on the context its settings share (see the module)."""

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> ssl.SSLSocket:
        if self.ssl_validate_ocsp or self.ssl_validate_ocsp_stapled:
            return super()._wrap_socket_with_ssl(sock)
        return shared_context(Settings.of(self)).wrap_socket(sock, server_hostname=self.host)
