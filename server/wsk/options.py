"""Command-line options that can also come from the environment.

Every option of a wsk command is a flag and an environment variable
(``--redis-url`` / ``WSK_REDIS_URL``), so that a systemd unit can configure a
node with an ``EnvironmentFile``. A flag wins over the environment, which wins
over the default. A value that does not parse stops the command with one line
on stderr that names where the value came from.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from wsk import redisurl

ENV_PREFIX = "WSK_"


class OptionError(ValueError):
    """An option value that cannot be used."""


@dataclass(frozen=True)
class Option:
    """One option: its flag, its environment variable and how to read it."""

    name: str
    convert: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def env(self, prefix: str) -> str:
        return prefix + self.name.upper()


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse(
    prog: str,
    description: str,
    options: Sequence[Option],
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    positionals: Callable[[argparse.ArgumentParser], None] | None = None,
    env_prefix: str = ENV_PREFIX,
) -> dict[str, Any]:
    """Read ``options`` from ``argv`` and ``environ``; exit 2 with one line on a bad value.

    An option ``redis_url`` is read from ``--redis-url``, else from the variable
    ``env_prefix + "REDIS_URL"``, else it takes its default.
    """
    parser = _OneLineParser(
        prog=prog,
        description=description,
        epilog="Every option can also be set by its environment variable, shown in brackets.",
    )
    if positionals is not None:
        positionals(parser)
    for option in options:
        parser.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            metavar=option.metavar,
            help=f"{option.help} [{option.env(env_prefix)}] (default: {_show(option.default)})",
        )
    args = parser.parse_intermixed_args(argv)
    environ = environ if environ is not None else {}
    values = dict(vars(args))
    for option in options:
        raw = values.get(option.name)
        source = option.flag
        env = option.env(env_prefix)
        if raw is None and env in environ:
            raw, source = environ[env], env
        if raw is None:
            values[option.name] = option.default
            continue
        try:
            values[option.name] = option.convert(raw)
        except OptionError as exc:
            parser.error(f"{source}={raw!r}: {exc}")
    return values


def fail(prog: str, message: str, status: int = 2) -> NoReturn:
    """Stop a command with one line on stderr."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(status)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    return "none" if value is None or value == "" else str(value)


# Converters: each takes the raw text and returns the value or raises OptionError.


def text(raw: str) -> str:
    if not raw.strip():
        raise OptionError("must not be empty")
    return raw.strip()


def port(raw: str) -> int:
    value = integer(raw)
    if not 1 <= value <= 65535:
        raise OptionError("a port is a number from 1 to 65535")
    return value


def integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise OptionError("not a whole number") from None


def non_negative_integer(raw: str) -> int:
    value = integer(raw)
    if value < 0:
        raise OptionError("must be 0 or more")
    return value


def positive_integer(raw: str) -> int:
    value = integer(raw)
    if value < 1:
        raise OptionError("must be 1 or more")
    return value


def seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise OptionError("not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise OptionError("must be a finite number of seconds, 0 or more")
    return value


def non_negative(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise OptionError("not a number") from None
    if not value >= 0 or value == float("inf"):
        raise OptionError("must be a finite number, 0 or more")
    return value


def positive_seconds(raw: str) -> float:
    value = seconds(raw)
    if value <= 0:
        raise OptionError("must be more than 0 seconds")
    return value


def redis_url(raw: str) -> str:
    url = raw.strip()
    if redisurl.is_sentinel(url):
        try:
            redisurl.parse_sentinel(url)
        except ValueError as exc:
            raise OptionError(str(exc)) from None
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise OptionError(f"not a valid URL ({exc})") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise OptionError("a unix:// URL needs a socket path")
        return url
    if parts.scheme not in ("redis", "rediss"):
        raise OptionError(
            "a Redis URL starts with redis://, rediss://, unix:// or redis+sentinel://"
        )
    if not parts.hostname:
        raise OptionError("the URL has no host")
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        raise OptionError("the database after the host must be a number")
    return url


def url_path(raw: str) -> str:
    path = raw.strip()
    if not path.startswith("/") or any(c in path for c in "?# "):
        raise OptionError("a path starts with / and has no spaces, ? or #")
    return path


def origins(raw: str) -> str | tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if "*" in items:
        return "*"
    for item in items:
        if not item.startswith(("http://", "https://")):
            raise OptionError(f"{item!r} is not an origin such as https://example.com or *")
    return items


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise OptionError("must be yes or no (true/false, on/off, 1/0)")


def sid_prefix(raw: str) -> str:
    value = raw.strip()
    if value and not all(c.isalnum() or c in "-._" for c in value):
        raise OptionError("letters, digits, '-', '.' and '_' only (it goes into URLs)")
    return value


def choice(*allowed: str) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise OptionError("must be one of " + ", ".join(allowed))
        return value

    return convert


def patterns(raw: str) -> tuple[str, ...]:
    """Comma-separated shell-style patterns (``chat.*,news``); none when empty."""
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    for item in items:
        if any(c.isspace() for c in item):
            raise OptionError(f"{item!r}: a pattern has no spaces")
    return items
