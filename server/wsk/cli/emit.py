"""``wsk-emit``: send one event to the clients of a running cluster, through Redis alone."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from wsk import options
from wsk.options import Option
from wsk.redisurl import hide_password

# wsk.manager imports eventlet, which a write-only manager does not use: its
# notice is for new projects
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
from wsk.config import SERVER_OPTIONS  # noqa: E402
from wsk.manager import ClusterManager, NotDelivered, NotReplicated  # noqa: E402

EMIT_OPTIONS = (
    Option("redis_url", options.redis_url, "redis://127.0.0.1:6379/0", "Redis URL of the cluster"),
    Option("channel", options.text, "wsk", "name of the cluster in Redis (its --channel)"),
    Option("room", options.text, None, "send to this room only (default: every client)"),
    Option("namespace", options.url_path, "/", "Socket.IO namespace"),
    *(
        option
        for option in SERVER_OPTIONS
        if option.name.startswith("redis_wait_") or option.name == "stream_shards"
    ),
)


def _positionals(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event", help="the event name, e.g. message")
    parser.add_argument(
        "data",
        nargs="?",
        default=None,
        help='the payload as JSON, e.g. \'{"text": "hi"}\' (default: no payload)',
    )
    parser.add_argument("--text", action="store_true", help="send DATA as a plain string, not JSON")


def main(argv: Sequence[str] | None = None) -> int:
    """Publish one event; exit 0 once Redis took it, 1 when it could not."""
    args = options.parse(
        "wsk-emit",
        "Send one Socket.IO event to every client (or a room) of a running wsk cluster.",
        EMIT_OPTIONS,
        argv,
        os.environ,
        _positionals,
    )
    data = payload(args["data"], args["text"])
    logging.basicConfig(level=logging.CRITICAL)  # this command reports failures itself
    manager = ClusterManager(
        args["redis_url"],
        args["channel"],
        write_only=True,
        wait_replicas=args["redis_wait_replicas"],
        wait_timeout=args["redis_wait_timeout"],
        shard_writes=args["stream_shards"],
    )
    try:
        offset = manager.emit(args["event"], data, namespace=args["namespace"], room=args["room"])
    except NotReplicated as exc:
        options.fail("wsk-emit", f"published, but not acknowledged: {exc}", 1)
    except NotDelivered:
        options.fail(
            "wsk-emit", f"cannot publish to Redis at {hide_password(args['redis_url'])}", 1
        )
    print(f"sent {args['event']!r} to cluster {args['channel']!r} (stream offset {offset})")
    return 0


def payload(raw: str | None, as_text: bool) -> Any:
    """The event's payload from the command line."""
    if raw is None or as_text:
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        options.fail("wsk-emit", f"DATA is not JSON ({exc}); use --text for a plain string")


if __name__ == "__main__":
    sys.exit(main())
