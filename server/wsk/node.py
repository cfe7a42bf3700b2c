"""One wsk node: builds the server from its Config, serves, and drains on SIGTERM.

The caller must have monkey-patched the standard library with eventlet before
importing this module (``wsk.cli.server`` does).
"""

from __future__ import annotations

import logging
import resource
import signal
import time
from types import FrameType

import eventlet

from wsk import events, redisurl
from wsk.app import NodeApp
from wsk.auth import Authenticator, load_keys
from wsk.config import Config
from wsk.health import RedisMonitor
from wsk.heartbeat import private_ipv4, run_heartbeat
from wsk.manager import ClusterManager
from wsk.metrics import Metrics
from wsk.sioserver import SocketIOServer
from wsk.transport import http

log = logging.getLogger("wsk.node")

# Descriptors a node keeps beyond one per connection: Redis, logs, the listener.
SPARE_DESCRIPTORS = 64


class Node:
    """Owns a node's Socket.IO server, its listener and its lifecycle."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.manager = ClusterManager(
            config.redis_url,
            config.channel,
            recovery_window=config.recovery_window,
            stream_max_entries=config.stream_max_entries,
            metrics=self.metrics,
            hold_limit=config.client_queue_packets,
            wait_replicas=config.redis_wait_replicas,
            wait_timeout=config.redis_wait_timeout,
            shard_writes=config.stream_shards,
        )
        self.sio = SocketIOServer(config, self.metrics, client_manager=self.manager)
        keys = load_keys(config.auth_jwt_key_file) if config.auth != "off" else ()
        self.authenticator = Authenticator(config.auth, keys, config.anonymous_rooms or ())
        events.register(self.sio, config, self.metrics, self.authenticator)
        self.monitor = RedisMonitor(config.redis_url, config.redis_url_for_logs, self.metrics)
        self.app = NodeApp(config, self.sio, self.monitor, self.metrics)
        self.host_ip = private_ipv4(redisurl.first_host(config.redis_url))
        self._stop_requested = False

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain and return."""
        config = self.config
        raise_descriptor_limit(config.max_connections + SPARE_DESCRIPTORS)
        # no SO_REUSEPORT (eventlet's default): a second process on the same port
        # would silently share its connections and break sticky sessions
        listener = eventlet.listen(
            (config.host, config.port), backlog=config.backlog, reuse_port=False
        )
        log.info(
            "node %s (%s) serving Socket.IO at %s on %s:%d, Redis %s, cluster %r, recovery %s, "
            "auth %s",
            config.node_name,
            self.host_ip,
            config.path,
            config.host,
            config.port,
            config.redis_url_for_logs,
            config.channel,
            f"{config.recovery_window:g} s" if config.recovery_window else "off",
            config.auth
            if config.auth == "off"
            else f"{config.auth} ({len(self.authenticator.keys)} keys: "
            f"{', '.join(self.authenticator.algorithms)})",
        )
        self.monitor.check()
        eventlet.spawn(self.monitor.run)
        # read the cluster's stream now rather than at the first client's connect;
        # the manager's reader retries on its own while Redis is away
        self.sio.manager_initialized = True
        self.manager.initialize()
        self.sio.start_background_task(
            run_heartbeat,
            self.sio,
            config.node_name,
            self.host_ip,
            config.heartbeat_interval,
            config.heartbeat_jitter,
            self.metrics,
        )
        limit = http.Limit(config.max_connections)
        self.metrics.open_connections.set_function(lambda: limit.held)
        server = eventlet.spawn(http.serve, listener, self.app, limit, config, self.metrics)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)
        while not self._stop_requested and not server.dead:
            eventlet.sleep(0.2)
        self.drain(listener, server)

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested = True

    def drain(self, listener: eventlet.greenio.GreenSocket, server: eventlet.GreenThread) -> None:
        """Stop accepting, close every client's transport, wait for them to leave.

        The transports are closed without an Engine.IO or Socket.IO close packet:
        Socket.IO clients treat a server-side disconnect as final, but a lost
        transport as a reason to reconnect, which takes them to another node.
        """
        started = time.monotonic()
        self.app.draining = True
        # leave the accept loop (the server then shuts idle keep-alive connections
        # and waits for busy ones), and refuse connections from now on
        server.kill(KeyboardInterrupt)
        listener.close()
        sockets = list(self.sio.eio.sockets.values())
        log.info("draining: closing %d client transports", len(sockets))
        for sock in sockets:
            # a transport close, as the client sees it: its session waits for it elsewhere
            sock.close(wait=False, abort=True, reason=self.sio.eio.reason.TRANSPORT_CLOSE)
        with eventlet.Timeout(self.config.drain_timeout, False):
            try:
                server.wait()
            except Exception:
                log.debug("server loop ended", exc_info=True)
        left = sum(1 for sock in self.sio.eio.sockets.values() if not sock.closed)
        log.info(
            "drained in %.1f s (%d transports still open); exiting",
            time.monotonic() - started,
            left,
        )


def raise_descriptor_limit(wanted: int) -> int:
    """Raise this process' soft limit on open files towards ``wanted``; return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < wanted:
        log.warning(
            "open files are limited to %d, below the %d that %d connections need; "
            "raise LimitNOFILE",
            soft,
            wanted,
            wanted - SPARE_DESCRIPTORS,
        )
    return soft
