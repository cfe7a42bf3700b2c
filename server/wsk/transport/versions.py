"""The versions of the libraries whose private parts wsk uses, as its test suite ran them.

``wsk.transport.internals`` checks them when it is imported. pyproject.toml
declares the same bounds (``tests/test_config.py`` compares them).
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

# distribution: (lowest version tested, first version not tested)
TESTED = {
    "python-engineio": ("4.15", "4.16"),
    "python-socketio": ("5.18", "5.19"),
    "eventlet": ("0.40", "0.42"),
    # wsk.redistls: one SSLContext for all of a node's TLS connections to Redis;
    # wsk.redisparse: redis-py's hiredis parser, made to work under eventlet
    "redis": ("8.1", "8.2"),
}


class UnsupportedVersion(ImportError):
    """An installed library is outside the versions wsk was tested with."""


def _release(text: str) -> tuple[int, ...]:
    """The leading release numbers of a version string: "4.15.1" -> (4, 15, 1)."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def check_versions(tested: dict[str, tuple[str, str]] = TESTED) -> None:
    """Raise UnsupportedVersion, with one line, when a library is outside ``tested``."""
    for name, (lowest, beyond) in tested.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            raise UnsupportedVersion(
                f"{name} is not installed (wsk needs {name}>={lowest},<{beyond})"
            ) from None
        if not _release(lowest) <= _release(installed) < _release(beyond):
            raise UnsupportedVersion(
                f"{name} {installed} is installed; wsk is tested with {name}>={lowest},<{beyond}"
            )
