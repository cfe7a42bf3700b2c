"""Redis URLs, read without redis-py (``wsk.config`` loads before eventlet patches anything).

A node and wsk-emit reach Redis by one URL: ``redis://``, ``rediss://`` or
``unix://`` for one server (redis-py reads those), or, for a primary that
Redis Sentinel watches and replaces when it fails::

    redis+sentinel://[user:password@]host1[:port1],host2[:port2],.../service[/db]

The sentinels' addresses (port 26379 when left out), the name they monitor the
primary by (``sentinel monitor <service> ...``) and the database. The user and
password are given to the sentinels and to the data nodes alike: the redis
role gives both the nodes' user. redis-py's ``Sentinel`` asks the sentinels for
the primary on every new connection, so a node follows a failover by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelURL:
    """What a ``redis+sentinel://`` URL says."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    username: str | None
    password: str | None


def is_sentinel(url: str) -> bool:
    return url.strip().lower().startswith(SENTINEL_SCHEME + "://")


def _split(url: str) -> tuple[str, str, str]:
    """Scheme, netloc and the rest of ``url``; the userinfo stays in the netloc."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise ValueError("not a URL")
    netloc, slash, path = rest.partition("/")
    return scheme.lower(), netloc, slash + path


def _host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{item!r} is not a host[:port]")
        port_text = rest[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError(f"{item!r} has no host")
    if not port_text:
        return host, SENTINEL_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{item!r}: a port is a number from 1 to 65535")
    return host, int(port_text)


def parse_sentinel(url: str) -> SentinelURL:
    """Read a ``redis+sentinel://`` URL; ValueError with the reason when it is not one."""
    scheme, netloc, path = _split(url)
    if scheme != SENTINEL_SCHEME:
        raise ValueError(f"a Sentinel URL starts with {SENTINEL_SCHEME}://")
    if "?" in path or "#" in path or "?" in netloc:
        raise ValueError("a Sentinel URL takes no query")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(item.strip()) for item in hosts.split(","))
    parts = [part for part in path.split("/") if part]
    if not parts or len(parts) > 2:
        raise ValueError("a Sentinel URL names its primary, and maybe a database: /service[/db]")
    if len(parts) == 2 and not parts[1].isdigit():
        raise ValueError("the database after the service name must be a number")
    return SentinelURL(
        sentinels=sentinels,
        service=unquote(parts[0]),
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
    )


def first_host(url: str) -> str | None:
    """The first host the URL names (a sentinel's, for a Sentinel URL); None for unix://."""
    scheme, netloc, _ = _split(url)
    if scheme == "unix":
        return None
    item = netloc.rpartition("@")[2].split(",")[0].strip()
    return _host_port(item)[0] if item else None


def hide_password(url: str) -> str:
    """Return ``url`` with the password, if any, replaced by ``***``."""
    try:
        _, netloc, rest = _split(url)
    except ValueError:
        return url
    userinfo, at, hosts = netloc.rpartition("@")
    user, colon, secret = userinfo.partition(":")
    if not at or not colon or not secret:
        return url
    return f"{url.strip().partition('://')[0]}://{user}:***@{hosts}{rest}"
