"""The Redis client manager that joins the nodes of a cluster.

It is python-socketio's RedisManager with its connection handling replaced. The
original shares one Redis client between publishing and subscribing and makes a
new one whenever either fails: under overload (Redis drops a subscriber that
reads too slowly) that cascade broke in-flight publishes and left the listener
spinning on a subscription that no longer existed. Here the publisher and the
subscriber have a client each, the publisher's pool reconnects by itself and
makes a burst of publishes wait for a connection rather than fail, and a
subscription that ends for any reason is made again after a short, capped wait.
The manager also counts what it relays and what it fails to publish.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import redis
import socketio

from wsk.config import hide_password
from wsk.metrics import Metrics, event_label

log = logging.getLogger("wsk.cluster")

# Seconds the subscriber waits before its first retry, and at most between two.
RESUBSCRIBE_FIRST_WAIT = 0.5
RESUBSCRIBE_MAX_WAIT = 5.0

# Publishes in flight at once; more wait for a connection (at most PUBLISH_WAIT
# seconds) instead of failing as redis-py's default pool does past 100.
PUBLISH_CONNECTIONS = 32
PUBLISH_WAIT = 10.0

REDIS_OPTIONS = {
    "socket_connect_timeout": 3,
    "socket_keepalive": True,
    # lets a subscriber notice a connection that died without a FIN
    "health_check_interval": 15,
}


class SubscriptionEnded(ConnectionError):
    """The subscriber's connection stopped delivering without an error."""


class ClusterManager(socketio.RedisManager):
    """Relays events between the nodes of a cluster through Redis pub/sub."""

    def __init__(
        self,
        url: str,
        channel: str,
        metrics: Metrics | None = None,
        write_only: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            url=url,
            channel=channel,
            write_only=write_only,
            redis_options=dict(REDIS_OPTIONS),
            **kwargs,
        )
        self.metrics = metrics
        self.url_for_logs = hide_password(url)
        self.publisher: redis.Redis | None = None
        self.last_publish_receivers: int | None = None

    def _client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, **self.redis_options)

    def _publisher(self) -> redis.Redis:
        pool = redis.BlockingConnectionPool.from_url(
            self.redis_url,
            max_connections=PUBLISH_CONNECTIONS,
            timeout=PUBLISH_WAIT,
            **self.redis_options,
        )
        return redis.Redis(connection_pool=pool)

    def _publish(self, data: dict[str, Any]) -> int | None:
        """Publish ``data``; return the number of nodes subscribed, or None on failure."""
        if self.publisher is None:
            self.publisher = self._publisher()
        try:
            receivers = self.publisher.publish(self.channel, self.json.dumps(data))
        except Exception as exc:
            # the pool drops the failed connection; the next publish makes a new one
            log.error("Cannot publish to Redis at %s: %s", self.url_for_logs, exc)
            if self.metrics is not None:
                self.metrics.redis_publish_failures.inc()
            receivers = None
        self.last_publish_receivers = receivers
        return receivers

    def _handle_emit(self, message: dict[str, Any]) -> None:
        """Deliver an emit to this node's clients, and count it."""
        if self.metrics is not None:
            self.metrics.events_out.labels(event_label(str(message.get("event")))).inc()
        super()._handle_emit(message)

    def _redis_listen_with_retries(self) -> Iterator[dict[str, Any]]:
        wait = RESUBSCRIBE_FIRST_WAIT
        while True:
            client = self._client()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                if wait > RESUBSCRIBE_FIRST_WAIT:
                    log.warning("Subscribed to Redis at %s again", self.url_for_logs)
                wait = RESUBSCRIBE_FIRST_WAIT
                yield from pubsub.listen()
                raise SubscriptionEnded("the subscription ended")
            except Exception as exc:
                log.error(
                    "Cannot receive from Redis at %s (%s); retrying in %.1f s",
                    self.url_for_logs,
                    exc,
                    wait,
                )
            finally:
                pubsub.close()
                client.close()
            time.sleep(wait)
            wait = min(wait * 2, RESUBSCRIBE_MAX_WAIT)
