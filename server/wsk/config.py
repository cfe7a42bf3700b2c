"""The configuration of one wsk node, built once from flags and environment."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from wsk import options
from wsk.options import Option

LOG_LEVELS = ("debug", "info", "warning", "error")

SERVER_OPTIONS = (
    Option("host", options.text, "0.0.0.0", "address to listen on"),
    Option("port", options.port, 5000, "TCP port to listen on"),
    Option("node_name", options.text, None, "name of this node (default: <hostname>:<port>)"),
    Option("redis_url", options.redis_url, "redis://127.0.0.1:6379/0", "Redis URL"),
    Option("channel", options.text, "wsk", "Redis pub/sub channel shared by the cluster"),
    Option("path", options.url_path, "/", "path Socket.IO is served at"),
    Option(
        "heartbeat_interval",
        options.positive_seconds,
        30.0,
        "seconds between two okok heartbeats",
    ),
    Option("heartbeat_jitter", options.seconds, 10.0, "random seconds added to each interval"),
    Option("cors_origins", options.origins, "*", "allowed browser origins, comma-separated, or *"),
    Option("max_payload", options.positive_integer, 1_000_000, "largest message in bytes"),
    Option(
        "max_connections",
        options.positive_integer,
        15_000,
        "concurrent connections served at once",
    ),
    Option("backlog", options.positive_integer, 1024, "listen backlog of the server socket"),
    Option("ping_interval", options.positive_seconds, 25.0, "Engine.IO ping interval, seconds"),
    Option("ping_timeout", options.positive_seconds, 20.0, "Engine.IO ping timeout, seconds"),
    Option(
        "drain_timeout",
        options.seconds,
        10.0,
        "seconds SIGTERM waits for clients to leave before exiting",
    ),
    Option("log_level", options.choice(*LOG_LEVELS), "info", "debug, info, warning or error"),
)


@dataclass(frozen=True)
class Config:
    """Everything a node needs to know, validated."""

    host: str = "0.0.0.0"
    port: int = 5000
    node_name: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    channel: str = "wsk"
    path: str = "/"
    heartbeat_interval: float = 30.0
    heartbeat_jitter: float = 10.0
    cors_origins: str | tuple[str, ...] = "*"
    max_payload: int = 1_000_000
    max_connections: int = 15_000
    backlog: int = 1024
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    drain_timeout: float = 10.0
    log_level: str = "info"

    @property
    def redis_url_for_logs(self) -> str:
        """The Redis URL with its password hidden."""
        return hide_password(self.redis_url)


def load_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Build the node's Config from flags and ``WSK_*`` environment variables."""
    values = options.parse(
        "wsk-server",
        "Run one wsk node: a Socket.IO server clustered with its peers over Redis.",
        SERVER_OPTIONS,
        argv,
        os.environ if environ is None else environ,
    )
    if not values["node_name"]:
        values["node_name"] = f"{socket.gethostname()}:{values['port']}"
    return Config(**values)


def hide_password(url: str) -> str:
    """Return ``url`` with the password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
