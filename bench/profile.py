"""A summary of a py-spy profile: where a wsk node's time went.

py-spy's ``raw`` format is one line per distinct stack, outermost frame first,
frames separated by ``;``, then a space and the number of samples. A frame reads
``function (package/file.py:line)``; functions are counted without their line.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def where(file: str) -> str:
    """The top-level package or module a frame's file belongs to.

    py-spy names a file by its path below the ``sys.path`` entry it came from
    (``eventlet/hubs/hub.py``, ``json/encoder.py``, ``threading.py``).
    """
    if not file:
        return "?"
    if file.startswith("/"):
        if "/server/wsk/" in file:
            return "wsk"
        return file.rsplit("/", 1)[-1].removesuffix(".py")
    return file.split("/", 1)[0].removesuffix(".py")


def parse_frame(frame: str) -> tuple[str, str]:
    """``(function, file)`` of one frame."""
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match["function"], match["file"]


def summarize(raw: Path, top: int = 20) -> dict[str, Any]:
    """Top functions by own time and by inclusive time, and own time by package."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [parse_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        function, file = frames[-1]
        own[f"{function} ({file})"] += count
        packages[where(file)] += count
        for name in {f"{fn} ({fl})" for fn, fl in frames}:
            inclusive[name] += count

    def shares(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"name": name, "samples": n, "share": round(n / total, 4)}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "own": shares(own),
        "inclusive": shares(inclusive),
        "packages": shares(packages),
    }
