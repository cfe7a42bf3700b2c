"""Redis clients, made in one place from the configured URL.

Every Redis client of a node (the stream's writer and reader, the session
store, the health check) and of wsk-emit is made here, with the same options.
"""

from __future__ import annotations

import redis

OPTIONS = {
    "socket_connect_timeout": 3,
    "socket_keepalive": True,
    # lets a blocked reader notice a connection that died without a FIN
    "health_check_interval": 15,
}

# Writes in flight at once; more wait for a connection (at most POOL_WAIT seconds)
# instead of failing as redis-py's default pool does past 100.
POOL_CONNECTIONS = 32
POOL_WAIT = 10.0


def client(url: str, **options: object) -> redis.Redis:
    """One client with its own connection, for a reader that blocks."""
    return redis.Redis.from_url(url, **{**OPTIONS, **options})


def pool(url: str) -> redis.Redis:
    """A client over a bounded pool, for writes that may come in bursts."""
    connections = redis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT, **OPTIONS
    )
    return redis.Redis(connection_pool=connections)
