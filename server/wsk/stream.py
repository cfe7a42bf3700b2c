"""The cluster's log: one Redis Stream that every node and wsk-emit append to, and read in order.

Every message that crosses nodes (an emit to a room or to everyone, a room
change for a client of another node) is one entry, appended with XADD. Its
entry id (``<milliseconds>-<sequence>``, assigned by Redis, always increasing)
is its *offset*: the position of the message in the cluster's one order.
Every node reads the stream from the offset it reached (XREAD), so a node that
lost Redis for a moment resumes where it was, and delivers every entry, its own
included, in that order. A client's offset says exactly what it has seen.

The stream keeps entries for ``retention`` seconds (XADD ... MINID ~), and at
most ``max_entries`` (XTRIM MAXLEN ~), whichever is less.

With ``wait_replicas`` set, a batch of appends is followed by WAIT in the same
round trip: its entries count as appended only once that many replicas have
them, so that an acknowledged message survives the loss of the primary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import redis

log = logging.getLogger("wsk.stream")

FIELD = "m"  # the one field of an entry: the message, as JSON
FIELD_BYTES = FIELD.encode()


class Offset(tuple):
    """A stream entry id as a comparable pair: "1764680000000-3" -> (1764680000000, 3)."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: Any) -> Offset:
        """An offset from its text; ValueError when it is not one."""
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        if not isinstance(text, str):
            raise ValueError("an offset is a string")
        ms, sep, seq = text.partition("-")
        if not sep or not ms.isdigit() or not seq.isdigit() or len(text) > 41:
            raise ValueError(f"not a stream offset: {text[:41]!r}")
        return cls((int(ms), int(seq)))

    @classmethod
    def of_entry(cls, entry_id: bytes | str) -> Offset:
        """The offset of an id that Redis gave an entry (no checks: it is well formed)."""
        ms, seq = entry_id.split(b"-" if isinstance(entry_id, bytes) else "-")
        return cls((int(ms), int(seq)))

    def __str__(self) -> str:
        return f"{self[0]}-{self[1]}"


ZERO = Offset((0, 0))


class Unreplicated(redis.RedisError):
    """The primary took an append, but too few replicas had it within the wait."""


class Stream:
    """One Redis Stream, written and read by the nodes of a cluster."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        retention: float,
        max_entries: int,
        trims: bool = True,
        wait_replicas: int = 0,
        wait_timeout: float = 0.5,
    ) -> None:
        self.client = client
        # replicas that must have an append before it counts, and how long to wait for them
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = max(1, int(wait_timeout * 1000))
        # only the nodes trim: a writer that does not know the cluster's recovery
        # window (wsk-emit) must not cut what the nodes keep for it
        self.trims = trims
        self.key = key
        self.retention = retention
        self.max_entries = max_entries
        # Redis's clock minus ours, in ms, from the ids it gives: entry ids are its time
        self.skew_ms: int | None = None

    def append(self, message: dict[str, Any]) -> Offset:
        """Add a message; its offset. Raises redis.RedisError when Redis does not take it."""
        return self.append_all([message])[0]

    def append_all(self, messages: list[dict[str, Any]]) -> list[Offset | Exception]:
        """Add messages in this order, in one round trip; each one's offset, or its error.

        Raises redis.RedisError when Redis cannot be reached at all.
        """
        now_ms = int(time.time() * 1000)
        trim: dict[str, Any] = {}
        if self.skew_ms is not None and self.trims:
            oldest = now_ms + self.skew_ms - int(self.retention * 1000)
            trim = {"minid": oldest, "approximate": True}
        pipe = self.client.pipeline(transaction=False)
        for message in messages:
            pipe.xadd(self.key, {FIELD: json.dumps(message, separators=(",", ":"))}, **trim)
        if self.wait_replicas:
            pipe.wait(self.wait_replicas, self.wait_timeout_ms)
        answers = pipe.execute(raise_on_error=False)
        results: list[Offset | Exception] = []
        for entry in answers[: len(messages)]:
            if isinstance(entry, Exception):
                results.append(entry)
                continue
            offset = Offset.parse(entry)
            self.skew_ms = offset[0] - now_ms
            results.append(offset)
        if self.wait_replicas:
            results = self._replicated(results, answers[-1])
        return results

    def _replicated(
        self, results: list[Offset | Exception], replicas: Any
    ) -> list[Offset | Exception]:
        """The results of a batch given WAIT's answer: every append fails if too few have it."""
        if isinstance(replicas, Exception):
            shortfall: Exception = replicas
        elif int(replicas) >= self.wait_replicas:
            return results
        else:
            shortfall = Unreplicated(
                f"{int(replicas)} of {self.wait_replicas} replicas had it "
                f"within {self.wait_timeout_ms} ms"
            )
        return [shortfall if isinstance(r, Offset) else r for r in results]

    def read(self, after: Offset, block_ms: int, count: int) -> list[tuple[Offset, dict]]:
        """The entries after ``after``, waiting up to ``block_ms`` for the first one."""
        answer = self.client.xread({self.key: str(after)}, count=count, block=block_ms)
        if not answer:
            return []
        return list(_entries(answer[0][1]))

    def range(self, after: Offset, upto: Offset, count: int) -> list[tuple[Offset, dict]]:
        """The entries in (after, upto], at most ``count`` of them."""
        entries = self.client.xrange(self.key, min=f"({after}", max=str(upto), count=count)
        return list(_entries(entries))

    def info(self) -> dict[str, Any]:
        """Last id, first entry's id, length and the highest id trimmed; empty if none."""
        try:
            raw = self.client.xinfo_stream(self.key)
        except redis.ResponseError:  # no such key: nothing was ever appended
            return {"length": 0, "last": ZERO, "first": None, "trimmed": ZERO}
        first = raw.get("first-entry")
        return {
            "length": raw.get("length", 0),
            "last": Offset.parse(raw["last-generated-id"]),
            "first": Offset.parse(first[0]) if first else None,
            "trimmed": Offset.parse(raw.get("max-deleted-entry-id") or "0-0"),
        }

    def trim(self) -> None:
        """Hold the stream to ``max_entries`` (retention is applied on every append)."""
        if self.trims:
            self.client.xtrim(self.key, maxlen=self.max_entries, approximate=True)


def _entries(raw: list) -> Iterator[tuple[Offset, dict]]:
    for entry_id, fields in raw:
        offset = Offset.of_entry(entry_id)
        body = fields.get(FIELD_BYTES) or fields.get(FIELD)
        try:
            message = json.loads(body)
        except (TypeError, ValueError):
            log.warning("stream entry %s is not a wsk message; skipped", offset)
            continue
        if isinstance(message, dict):
            yield offset, message
