"""What machine and which versions a run measured."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.procs import NODE_DIR, require

PYTHON_PACKAGES = ("wsk", "python-socketio", "python-engineio", "eventlet", "redis", "uvloop")
NODE_PACKAGES = (
    "socket.io",
    "engine.io",
    "@socket.io/redis-adapter",
    "@socket.io/redis-streams-adapter",
    "redis",
    "ws",
)


def _first_line(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    return (result.stdout or result.stderr).strip().splitlines()[0]


def cpu_model() -> str:
    """The processor's model name, as /proc/cpuinfo gives it."""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def python_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PYTHON_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def node_versions(node_dir: Path = NODE_DIR) -> dict[str, str]:
    """Node's version and those of the packages ``npm ci`` installed for the reference."""
    found = {"node": _first_line([require("node"), "--version"]).lstrip("v")}
    for name in NODE_PACKAGES:
        manifest = node_dir / "node_modules" / name / "package.json"
        if manifest.exists():
            found[name] = json.loads(manifest.read_text())["version"]
    return found


def describe() -> dict[str, Any]:
    """The machine and the versions of everything measured."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": python_versions(),
        "node": node_versions(),
        "redis_server": _first_line([require("redis-server"), "--version"]),
        "haproxy": _first_line([require("haproxy"), "-v"]),
    }


def _os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]
