"""Prometheus metrics of one node, in a registry of its own."""

from __future__ import annotations

import platform
from importlib.metadata import version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from wsk import __version__
from wsk.auth import REASONS as auth_reasons

# Event names come from clients: only these get a label of their own, so that a
# client cannot grow the metrics without bound by inventing event names.
KNOWN_EVENTS = frozenset(
    {"connect", "disconnect", "test000", "whoami", "join", "leave", "publish", "okok", "message"}
)
OTHER_EVENT = "other"

CONTENT_TYPE = CONTENT_TYPE_LATEST

# the *_created series double the output and say nothing a scraper needs
disable_created_metrics()


def event_label(event: str) -> str:
    """The label an event is counted under."""
    return event if event in KNOWN_EVENTS else OTHER_EVENT


class Metrics:
    """The metrics a node exports on ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.connected_clients = Gauge(
            "wsk_connected_clients",
            "Socket.IO clients connected to this node.",
            registry=self.registry,
        )
        self.open_connections = Gauge(
            "wsk_open_connections",
            "Client connections this node holds now (HTTP and websocket), out of its "
            "--max-connections.",
            registry=self.registry,
        )
        self.events_in = Counter(
            "wsk_events_received",
            "Events received from this node's clients, by event name.",
            ["event"],
            registry=self.registry,
        )
        self.events_out = Counter(
            "wsk_events_sent",
            "Events this node delivered to its clients (once per event, whatever the "
            "number of recipients), by event name.",
            ["event"],
            registry=self.registry,
        )
        self.redis_publish_failures = Counter(
            "wsk_redis_publish_failures",
            "Messages this node could not append to the cluster's stream (their senders got "
            "an error).",
            registry=self.registry,
        )
        self.redis_unreplicated = Counter(
            "wsk_redis_unreplicated",
            "Of those, messages the primary took but too few replicas had within "
            "--redis-wait-timeout (--redis-wait-replicas).",
            registry=self.registry,
        )
        self.redis_up = Gauge(
            "wsk_redis_up",
            "1 when this node's last Redis check succeeded, else 0.",
            registry=self.registry,
        )
        self.protocol_errors = Counter(
            "wsk_protocol_errors",
            "Input refused for breaking the protocol or a limit, by where it came: frame "
            "(websocket), post (long-polling), handshake, packet (Socket.IO), event.",
            ["kind"],
            registry=self.registry,
        )
        self.clients_dropped = Counter(
            "wsk_clients_dropped",
            "Clients this node disconnected for going past a limit: queue (too much "
            "waiting for a client that does not read), rate (events sent too fast).",
            ["reason"],
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "wsk_connections_refused",
            "Connections answered and closed at once: full (--max-connections reached), "
            "request_timeout (no whole request within --request-timeout).",
            ["reason"],
            registry=self.registry,
        )
        self.idle_connections_closed = Counter(
            "wsk_idle_connections_closed",
            "Keep-alive connections closed for waiting longer than --request-timeout for "
            "their next request (HAProxy's idle pool, say): not refusals.",
            registry=self.registry,
        )
        self.events_refused = Counter(
            "wsk_events_refused",
            "Events answered with an error for going past a per-client limit: rate "
            "(--client-event-rate), rooms (--client-max-rooms), forbidden (a join or "
            "publish the client's token, or --anonymous-rooms, does not allow).",
            ["reason"],
            registry=self.registry,
        )
        self.auth_refused = Counter(
            "wsk_auth_refused",
            "Connects refused for their token (--auth), by reason: "
            + ", ".join(auth_reasons)
            + ".",
            ["reason"],
            registry=self.registry,
        )
        for reason in auth_reasons:
            self.auth_refused.labels(reason)
        self.heartbeats = Counter(
            "wsk_heartbeats_sent",
            "okok heartbeats this node broadcast to the cluster.",
            registry=self.registry,
        )
        self.recoveries_attempted = Counter(
            "wsk_recoveries_attempted",
            "Clients that came back asking for their session (connection-state recovery).",
            registry=self.registry,
        )
        self.recoveries = Counter(
            "wsk_recoveries",
            "Recoveries by result (succeeded, failed) and, for failures, the reason: "
            "unknown_session (none, or expired), bad_offset, gap (the stream no longer holds "
            "what followed the offset), redis, disabled.",
            ["result", "reason"],
            registry=self.registry,
        )
        self.replayed = Counter(
            "wsk_recovery_replayed",
            "Events replayed to recovered clients.",
            registry=self.registry,
        )
        self.stream_length = Gauge(
            "wsk_stream_length",
            "Entries in the cluster's stream, as this node last saw it.",
            registry=self.registry,
        )
        self.stream_oldest_age = Gauge(
            "wsk_stream_oldest_age_seconds",
            "Age of the oldest entry of the cluster's stream: how far back a replay can go.",
            registry=self.registry,
        )
        self.stream_entries_read = Counter(
            "wsk_stream_entries_read",
            "Entries this node read from the cluster's stream: its shards' and the main one's.",
            registry=self.registry,
        )
        self.stream_shards_read = Gauge(
            "wsk_stream_shards_read",
            "Shards of the cluster's stream this node reads: those of the rooms it has members in.",
            registry=self.registry,
        )
        self.build = Info("wsk_build", "Versions this node runs.", registry=self.registry)
        self.build.info(
            {
                "version": __version__,
                "python_socketio": version("python-socketio"),
                "python_engineio": version("python-engineio"),
                "python": platform.python_version(),
            }
        )

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
