"""The Redis client manager that joins the nodes of a cluster.

It is python-socketio's RedisManager with three changes: it counts what it
sends and what it fails to publish, it reports how many nodes heard a publish,
and its subscriber comes back within seconds of Redis returning instead of
backing off for up to a minute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import socketio

from wsk.metrics import Metrics, event_label

# Seconds the subscriber waits before its first retry, and at most between two.
RESUBSCRIBE_FIRST_WAIT = 0.5
RESUBSCRIBE_MAX_WAIT = 5.0

REDIS_OPTIONS = {
    "socket_connect_timeout": 3,
    "socket_keepalive": True,
    # lets a subscriber notice a connection that died without a FIN
    "health_check_interval": 15,
}


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
        self.last_publish_receivers: int | None = None

    def _publish(self, data: dict[str, Any]) -> int | None:
        """Publish ``data``; return the number of nodes subscribed, or None on failure."""
        receivers = super()._publish(data)
        self.last_publish_receivers = receivers
        if receivers is None and self.metrics is not None:
            self.metrics.redis_publish_failures.inc()
        return receivers

    def _handle_emit(self, message: dict[str, Any]) -> None:
        """Deliver an emit to this node's clients, and count it."""
        if self.metrics is not None:
            self.metrics.events_out.labels(event_label(str(message.get("event")))).inc()
        super()._handle_emit(message)

    def _redis_listen_with_retries(self) -> Iterator[dict[str, Any]]:
        wait = RESUBSCRIBE_FIRST_WAIT
        subscribed = False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    self.pubsub.subscribe(self.channel)
                    subscribed = True
                    if wait > RESUBSCRIBE_FIRST_WAIT:
                        self._get_logger().warning("Subscribed to Redis again")
                    wait = RESUBSCRIBE_FIRST_WAIT
                yield from self.pubsub.listen()
            except Exception as exc:
                self._get_logger().error(
                    "Cannot receive from Redis (%s); retrying in %.1f s", exc, wait
                )
                subscribed = False
                time.sleep(wait)
                wait = min(wait * 2, RESUBSCRIBE_MAX_WAIT)
