"""Redis clients, made in one place from the configured URL.

Every Redis client of a node (the stream's writer and reader, the session
store, the health check) and of wsk-emit is made here, with the same options.

A ``redis+sentinel://`` URL (``wsk.redisurl``) gives clients of the primary
that Redis Sentinel names: redis-py's ``Sentinel.master_for``, whose pool asks
the sentinels for the primary's address on every new connection and drops
connections to a primary that was demoted (it answers READONLY). A failover
then costs a node what a Redis restart does: errors for a few seconds, its
retries, and the stream read on from where it was, now on the new primary.
"""

from __future__ import annotations

import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from wsk import redisurl
from wsk.redisparse import parser_class
from wsk.redistls import SharedContextSSLConnection

# redis-py's retries, turned off (see OPTIONS)
NO_RETRY = Retry(NoBackoff(), 0)

OPTIONS = {
    # Redis is on the cluster's private network: a connect that takes longer than
    # this is to a host that is gone (one lost SYN is resent after 1 s)
    "socket_connect_timeout": 2,
    # no retries inside redis-py: the callers have their own (the reader's backoff, a
    # publish's error), and a command retried after its reply was lost may have run
    # already (an XADD twice is a message delivered twice). The pool still replaces a
    # connection that Redis closed before handing it out. redis-py's default (10
    # retries with backoff, each a connect that may time out) held a node for 25 s
    # after the primary's host went away.
    "retry": NO_RETRY,
    # a host that vanished (powered off, cut off) sends no FIN: a reply that does not
    # come within this is an error, so that writes fail over and the reader, whose
    # XREAD blocks for READ_BLOCK_MS (2 s), reconnects (to the new primary, with Sentinel)
    "socket_timeout": 5,
    "socket_keepalive": True,
    # lets a blocked reader notice a connection that died without a FIN
    "health_check_interval": 15,
    # replies parsed in C by hiredis, in a way that works under eventlet (wsk.redisparse)
    "parser_class": parser_class(),
}
# A sentinel that does not answer within this is skipped for the next one.
SENTINEL_TIMEOUT = 2.0

# Writes in flight at once; more wait for a connection (at most POOL_WAIT seconds)
# instead of failing as redis-py's default pool does past 100.
POOL_CONNECTIONS = 32
POOL_WAIT = 10.0


class BlockingSentinelPool(redis.sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """Sentinel's pool of connections to the primary, bounded as ``pool`` bounds the others."""


def _sentinel(url: str, options: dict[str, object]) -> tuple[redis.sentinel.Sentinel, str]:
    """The Sentinel client for ``url`` and the name of the primary it watches."""
    parsed = redisurl.parse_sentinel(url)
    auth = {"username": parsed.username, "password": parsed.password}
    sentinel = redis.sentinel.Sentinel(
        list(parsed.sentinels),
        sentinel_kwargs={
            **auth,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_keepalive": True,
            # a sentinel that does not answer is skipped for the next one at once
            "retry": NO_RETRY,
        },
        db=parsed.db,
        **auth,
        **options,
    )
    # the sentinels' clients parse as the others do (redis.Redis() does not take a
    # parser; their pools open connections only when first asked)
    for one in sentinel.sentinels:
        one.connection_pool.connection_kwargs["parser_class"] = OPTIONS["parser_class"]
    return sentinel, parsed.service


def _tls(url: str) -> dict[str, object]:
    """For a rediss:// URL, TLS connections that share their SSLContext (wsk.redistls)."""
    return {"connection_class": SharedContextSSLConnection} if url.startswith("rediss://") else {}


def client(url: str, **options: object) -> redis.Redis:
    """One client with its own connection, for a reader that blocks."""
    if redisurl.is_sentinel(url):
        sentinel, service = _sentinel(url, {**OPTIONS, **options})
        return sentinel.master_for(service)
    return redis.Redis.from_url(url, **{**OPTIONS, **_tls(url), **options})


def reader(url: str) -> redis.Redis:
    """A client that keeps one connection, for the stream's reader; it connects now.

    Its commands skip the pool's checkout and its readiness check of the
    connection, which were a tenth of the reader's CPU when each read returns a
    few entries. Nothing checks the connection after an error either (with
    Sentinel, redis-py keeps it open after a failed read): its owner closes the
    client when a command fails, and makes a new one. Raises redis.RedisError
    when Redis cannot be reached.
    """
    return redis.Redis(connection_pool=client(url).connection_pool, single_connection_client=True)


def close(client: redis.Redis) -> None:
    """Close a client and every connection of its pool."""
    client.close()
    client.connection_pool.disconnect()


def pool(url: str) -> redis.Redis:
    """A client over a bounded pool, for writes that may come in bursts."""
    if redisurl.is_sentinel(url):
        sentinel, service = _sentinel(url, OPTIONS)
        return sentinel.master_for(
            service,
            connection_pool_class=BlockingSentinelPool,
            max_connections=POOL_CONNECTIONS,
            timeout=POOL_WAIT,
        )
    connections = redis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT, **OPTIONS, **_tls(url)
    )
    return redis.Redis(connection_pool=connections)
