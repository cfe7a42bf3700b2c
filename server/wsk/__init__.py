"""wsk: one node of a Socket.IO cluster, clustered over Redis pub/sub."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wsk")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
