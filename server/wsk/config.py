"""The configuration of one wsk node, built once from flags and environment.

``Config`` is the one definition of every option: its type, default, converter
and help. The command line (``SERVER_OPTIONS``), ``wsk-server --help`` and the
socketio role's defaults all follow from it (``tests/test_config.py`` checks the
role against it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from wsk import auth, options, redisconn
from wsk.options import Option, OptionError
from wsk.redisurl import hide_password

LOG_LEVELS = ("debug", "info", "warning", "error")


def _key_file(raw: str) -> str:
    """A key file wsk-server can verify tokens with (``wsk.auth.load_keys``)."""
    path = options.text(raw)
    try:
        auth.load_keys(path)
    except auth.BadKey as exc:
        raise OptionError(str(exc)) from None
    return path


def _wait_timeout(raw: str) -> float:
    """Seconds a publish may wait for replicas: under the reply timeout of every Redis client."""
    value = options.positive_seconds(raw)
    limit = redisconn.OPTIONS["socket_timeout"]
    if value >= limit:
        raise OptionError(f"must be under {limit} s, the reply timeout of the node's Redis clients")
    return value


def _option(default: Any, convert: Callable[[str], Any], help: str) -> Any:
    return field(default=default, metadata={"convert": convert, "help": help})


@dataclass(frozen=True)
class Config:
    """Everything a node needs to know, validated."""

    host: str = _option("0.0.0.0", options.text, "address to listen on")
    port: int = _option(5000, options.port, "TCP port to listen on")
    node_name: str = _option("", options.text, "name of this node (default: <hostname>:<port>)")
    redis_url: str = _option(
        "redis://127.0.0.1:6379/0",
        options.redis_url,
        "Redis URL: redis://, rediss:// (TLS), unix://, or "
        "redis+sentinel://[user:password@]host:port,.../service[/db] (Sentinel)",
    )
    channel: str = _option(
        "wsk", options.text, "name of the cluster in Redis: its stream and sessions' prefix"
    )
    path: str = _option("/", options.url_path, "path Socket.IO is served at")
    heartbeat_interval: float = _option(
        30.0, options.positive_seconds, "seconds between two okok heartbeats"
    )
    heartbeat_jitter: float = _option(
        10.0, options.seconds, "random seconds added to each interval"
    )
    cors_origins: str | tuple[str, ...] = _option(
        "*", options.origins, "allowed browser origins, comma-separated, or *"
    )
    max_payload: int = _option(
        1_000_000, options.positive_integer, "largest message (or long-polling POST) in bytes"
    )
    max_connections: int = _option(
        15_000, options.positive_integer, "concurrent connections served at once"
    )
    backlog: int = _option(1024, options.positive_integer, "listen backlog of the server socket")
    ping_interval: float = _option(
        25.0, options.positive_seconds, "Engine.IO ping interval, seconds"
    )
    ping_timeout: float = _option(20.0, options.positive_seconds, "Engine.IO ping timeout, seconds")
    drain_timeout: float = _option(
        10.0, options.seconds, "seconds SIGTERM waits for clients to leave before exiting"
    )
    request_timeout: float = _option(
        10.0,
        options.positive_seconds,
        "seconds a request (headers, and a POST's body) has to arrive whole",
    )
    max_fragments: int = _option(
        1000, options.positive_integer, "fragments one websocket message may arrive in"
    )
    max_post_packets: int = _option(
        2000, options.positive_integer, "packets one long-polling POST may carry"
    )
    max_attachments: int = _option(
        64, options.positive_integer, "binary attachments one Socket.IO packet may carry"
    )
    client_queue_packets: int = _option(
        10_000,
        options.positive_integer,
        "packets queued for one client, past which it is dropped as too slow",
    )
    client_queue_bytes: int = _option(
        4_000_000,
        options.positive_integer,
        "bytes queued for one client, past which it is dropped as too slow",
    )
    client_event_rate: float = _option(
        100.0, options.non_negative, "events per second one client may send (0: no limit)"
    )
    client_event_burst: int = _option(
        500, options.positive_integer, "events one client may send at once above its rate"
    )
    client_max_rooms: int = _option(
        100, options.non_negative_integer, "rooms one client may be in at once (0: no limit)"
    )
    auth: str = _option(
        "off",
        options.choice(*auth.MODES),
        "client tokens (JWT in the connect's auth): off, optional or required",
    )
    auth_jwt_key_file: str = _option(
        "",
        _key_file,
        "file with the HS256 secret, or the PEM public key (RS256, ES256), tokens are checked with",
    )
    anonymous_rooms: str | tuple[str, ...] = _option(
        "",
        options.patterns,
        "with --auth optional, rooms a client without a token may join and publish into "
        "(comma-separated shell-style patterns)",
    )
    recovery_window: float = _option(
        120.0,
        options.seconds,
        "seconds a disconnected client's session waits for it to come back (0: no recovery)",
    )
    stream_max_entries: int = _option(
        1_000_000, options.positive_integer, "entries the cluster's stream keeps at most"
    )
    stream_shards: bool = _option(
        True,
        options.boolean,
        "append an emit to rooms to its rooms' shards of the stream, which only the nodes with "
        "members there read (no: to the main stream, which every node reads; every node reads "
        "both, for a rolling upgrade from a version without shards)",
    )
    redis_wait_replicas: int = _option(
        0,
        options.non_negative_integer,
        "Redis replicas that must have a publish before it is acknowledged (WAIT after the "
        "append; 0: the primary's word)",
    )
    redis_wait_timeout: float = _option(
        0.5,
        _wait_timeout,
        "seconds a publish waits for --redis-wait-replicas before it is answered with an error",
    )
    allow_eio3: bool = _option(
        False, options.boolean, "serve Engine.IO 3 / Socket.IO 2 clients (socket.io-client 2.x) too"
    )
    sid_prefix: str = _option(
        "",
        options.sid_prefix,
        "what every session id of this process starts with, so that a load balancer can "
        "route a request by its sid alone (the process's name in HAProxy)",
    )
    log_level: str = _option("info", options.choice(*LOG_LEVELS), "debug, info, warning or error")

    @property
    def redis_url_for_logs(self) -> str:
        """The Redis URL with its password hidden."""
        return hide_password(self.redis_url)


SERVER_OPTIONS = tuple(
    Option(f.name, f.metadata["convert"], f.default, f.metadata["help"]) for f in fields(Config)
)


def defaults() -> dict[str, Any]:
    """Every option's default, by name."""
    return {f.name: f.default for f in fields(Config)}


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
    if values["auth"] != "off" and not values["auth_jwt_key_file"]:
        options.fail("wsk-server", f"--auth {values['auth']} needs --auth-jwt-key-file")
    if values["anonymous_rooms"] and values["auth"] != "optional":
        options.fail("wsk-server", "--anonymous-rooms applies only with --auth optional")
    return Config(**values)
