"""Latency histograms that several processes fill and the coordinator merges.

A latency of ``t`` nanoseconds falls in bucket ``int(log2(t) * 16)``: 16 buckets
per doubling, so a percentile read back from the histogram is within about 4.4%
of the true value, whatever the range.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

PER_DOUBLING = 16
SIZE = 64 * PER_DOUBLING


def bucket(nanoseconds: int) -> int:
    """The bucket of one latency in nanoseconds."""
    if nanoseconds < 1:
        return 0
    return min(int(math.log2(nanoseconds) * PER_DOUBLING), SIZE - 1)


def new() -> list[int]:
    """An empty histogram."""
    return [0] * SIZE


def sparse(hist: list[int]) -> dict[str, int]:
    """The non-empty buckets of ``hist``, JSON-friendly."""
    return {str(i): n for i, n in enumerate(hist) if n}


def merge(parts: Iterable[Mapping[str, int]]) -> list[int]:
    """One histogram from sparse ones."""
    hist = new()
    for part in parts:
        for key, count in part.items():
            hist[int(key)] += count
    return hist


def percentile(hist: list[int], fraction: float) -> float | None:
    """The latency in milliseconds under which ``fraction`` of the samples fall."""
    total = sum(hist)
    if total == 0:
        return None
    wanted = max(1, math.ceil(total * fraction))
    seen = 0
    for index, count in enumerate(hist):
        seen += count
        if seen >= wanted:
            return 2 ** ((index + 0.5) / PER_DOUBLING) / 1e6
    raise AssertionError("unreachable: the counts add up to the total")


def summary(hist: list[int]) -> dict[str, float | int | None]:
    """Count, p50, p95 and p99 in milliseconds."""
    return {
        "count": sum(hist),
        "p50_ms": percentile(hist, 0.50),
        "p95_ms": percentile(hist, 0.95),
        "p99_ms": percentile(hist, 0.99),
    }
