"""``wsk-server``: run one node."""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Sequence

from wsk.config import load_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, then serve until SIGTERM; exit 0 after a drain."""
    config = load_config(argv)
    logging.basicConfig(
        level=config.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True
    )
    # eventlet must patch the standard library before redis and socketio load;
    # wsk knows eventlet is in maintenance mode, the warning is for new projects
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()
    try:
        from wsk.node import Node
    except ImportError as exc:  # a library outside the tested versions (wsk.transport.internals)
        sys.stderr.write(f"wsk-server: error: {exc}\n")
        return 2

    try:
        Node(config).run()
    except OSError as exc:
        logging.getLogger("wsk.node").error(
            "cannot serve on %s:%d: %s", config.host, config.port, exc
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
