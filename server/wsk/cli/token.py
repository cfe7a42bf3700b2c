"""``wsk-token``: mint a client token, for tests, demos and backends.

It signs with the same key file the nodes read (``WSK_AUTH_JWT_KEY_FILE``) when
that is an HS256 secret; for RS256 or ES256 give it the private key whose public
half the nodes have. The token goes to stdout, nothing else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from wsk import auth, options
from wsk.options import Option, OptionError


def _signing_key_file(raw: str) -> str:
    path = options.text(raw)
    try:
        auth.load_key(path, private=True)
    except auth.BadKey as exc:
        raise OptionError(str(exc)) from None
    return path


TOKEN_OPTIONS = (
    Option(
        "auth_jwt_key_file",
        _signing_key_file,
        None,
        "the HS256 secret the nodes share, or the PEM private key for RS256 or ES256",
    ),
    Option("sub", options.text, None, "the user the token names (its sub claim)"),
    Option("rooms", options.patterns, (), "rooms it may join, comma-separated patterns (chat.*)"),
    Option(
        "publish",
        options.patterns,
        (),
        'rooms it may publish into, comma-separated patterns; "*" also lets it publish to everyone',
    ),
    Option("ttl", options.positive_seconds, 3600.0, "seconds until the token expires"),
)


def main(argv: Sequence[str] | None = None) -> int:
    """Print one signed token."""
    args = options.parse(
        "wsk-token",
        "Mint a JWT that a wsk cluster with --auth accepts.",
        TOKEN_OPTIONS,
        argv,
        os.environ,
    )
    for name in ("auth_jwt_key_file", "sub"):
        if args[name] is None:
            options.fail("wsk-token", f"--{name.replace('_', '-')} is required")
    key = auth.load_key(args["auth_jwt_key_file"], private=True)
    print(auth.mint(key, args["sub"], args["rooms"], args["publish"], args["ttl"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
