"""Whether a node reaches Redis, checked in the background (``/healthz/redis``, the metric)."""

from __future__ import annotations

import logging
import time

from wsk import redisconn
from wsk.metrics import Metrics

log = logging.getLogger("wsk.health")

CHECK_INTERVAL = 1.0
CHECK_TIMEOUT = 2.0


class RedisMonitor:
    """Pings Redis every second and remembers whether it answered.

    The answer is kept, not asked for on each request, so that ``/healthz/redis`` never
    waits on Redis and a flood of health checks cannot load it.
    """

    def __init__(self, url: str, url_for_logs: str, metrics: Metrics) -> None:
        self.client = redisconn.client(
            url, socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT
        )
        self.url_for_logs = url_for_logs
        self.metrics = metrics
        self.up = False
        self.error = "not checked yet"
        self.metrics.redis_up.set(0)

    def check(self) -> bool:
        """Ping Redis once; log when the link comes up or goes down."""
        try:
            self.client.ping()
        except Exception as exc:
            error = str(exc) or type(exc).__name__
            if self.up or self.error == "not checked yet":
                log.error(
                    "Redis at %s is unreachable (%s); retrying every %.0f s",
                    self.url_for_logs,
                    error,
                    CHECK_INTERVAL,
                )
            self.up, self.error = False, error
        else:
            if not self.up:
                log.info("Redis at %s answers", self.url_for_logs)
            self.up, self.error = True, ""
        self.metrics.redis_up.set(1 if self.up else 0)
        return self.up

    def run(self) -> None:
        """Check forever, once a second."""
        while True:
            self.check()
            time.sleep(CHECK_INTERVAL)
