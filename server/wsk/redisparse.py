"""Redis replies parsed in C by hiredis, in a node that runs under eventlet.

Without hiredis, redis-py parses every reply in Python: about a sixth of the
stream reader's samples in py-spy (docs/benchmarks.md, "What a node pays for
other nodes' traffic"). With hiredis installed redis-py picks its hiredis parser
by itself, but that parser does not work under eventlet: before handing out a
pooled connection it asks whether unread data waits on it with ``select.poll``,
which eventlet's monkey patching removes, so every command fails with "module
'select' has no attribute 'poll'". (A node broke as soon as someone installed
hiredis beside it.)

``GreenHiredisParser`` is redis-py's hiredis parser with that one check done
the way eventlet allows: a zero-timeout ``poll`` of the real ``select`` module,
which never blocks the hub, and the green ``select`` for a check that may wait.
``parser_class()`` is what ``wsk.redisconn`` gives every connection: this parser
when hiredis is installed (wsk depends on it), redis-py's own Python parser when
it is not (a platform without a hiredis wheel).

It subclasses redis-py's private ``_HiredisParser``, checked at import against
the versions wsk was tested with (``wsk.transport.versions.TESTED``).
"""

from __future__ import annotations

import select
import socket
from typing import Any

from redis._parsers import _HiredisParser
from redis.connection import DefaultParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.utils import HIREDIS_AVAILABLE

from wsk.transport.versions import TESTED, check_versions

check_versions({"redis": TESTED["redis"]})

CLOSED = "Connection closed by server."  # redis-py's words for it

# the real poll, which monkey patching takes out of ``select``; with a timeout of 0
# it returns at once, so it may run in the hub's thread
try:
    _poll = select.poll
except AttributeError:  # imported after monkey patching, so eventlet is loaded already
    import eventlet.patcher

    _poll = eventlet.patcher.original("select").poll
_CLOSED = select.POLLERR | select.POLLHUP | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)


class GreenHiredisParser(_HiredisParser):
    """redis-py's hiredis parser, whose readiness check does not need ``select.poll``."""

    def can_read(self, timeout: float = 0) -> bool:
        """Whether a reply or pushed data waits on the connection; ConnectionError if closed.

        redis-py asks before handing a pooled connection out. It opens the
        connection again when this raises; whether it does when this answers True
        depends on its settings, so a connection that Redis closed must raise, as
        redis-py's own parsers do.
        """
        if self._reader is None or self._sock is None:
            raise RedisConnectionError(CLOSED)
        if self._reader.has_data():
            return True
        sock: Any = self._sock
        tls = hasattr(sock, "pending")
        if tls and sock.pending():  # TLS bytes decrypted already
            return True
        if timeout:
            import eventlet.green.select  # a node has loaded it: this runs under eventlet

            readable, _, _ = eventlet.green.select.select([sock], [], [], timeout)
            if not readable:
                return False
        poller = _poll()
        poller.register(sock.fileno(), select.POLLIN | _CLOSED)
        events = poller.poll(0)
        if not events:
            return False
        if events[0][1] & _CLOSED:
            raise RedisConnectionError(CLOSED)
        # readable: data, or the end of the stream; a plain socket can peek to tell (a
        # TLS socket takes no flags, and its peer's FIN shows as POLLRDHUP above)
        if not tls and sock.recv(1, socket.MSG_PEEK) == b"":
            raise RedisConnectionError(CLOSED)
        return True


def parser_class() -> type:
    """The parser for wsk's Redis connections: hiredis's when it is installed."""
    return GreenHiredisParser if HIREDIS_AVAILABLE else DefaultParser
