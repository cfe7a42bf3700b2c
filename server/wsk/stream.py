"""The cluster's log: Redis Streams that every node and wsk-emit append to, and read in order.

Every message that crosses nodes (an emit to a room or to everyone, a room
change for a client of another node) is one entry. Its entry id
(``<milliseconds>-<sequence>``, always increasing) is its *offset*: the
position of the message in the cluster's one order. A node reads from the
offset it reached (XREAD), so a node that lost Redis for a moment resumes where
it was, and delivers every entry, its own included, in that order. A client's
offset says exactly what it has seen.

The log is sharded, so that a node reads only what may concern its clients:

- an emit to named rooms is appended to the *shard* of each room
  (``<key>:<n>``, one of ``SHARDS``, by a hash of its namespace and name), read
  only by the nodes with a member in one of that shard's rooms;
- everything else is appended to the *main* stream ``<key>``, which every node
  reads: emits to everyone, to a client's own sid (a sid's node is not known to
  the sender), and room changes and disconnects for clients of other nodes.

One Lua script makes every append (``APPEND``): it takes the id from one clock
(``<key>:clock``, a stream of one entry), so that ids are unique and increase
across all the streams,
and an emit to rooms of two shards has the same id in both. A reader merges
what it reads from its streams by id; a client's offset is one id, whatever
stream it came from.

The streams keep entries for ``retention`` seconds (MINID ~ on each append),
and at most ``max_entries`` each (XTRIM MAXLEN ~, from every node's watch, for
the main stream and the shards it reads), whichever is less; a shard that
nobody appends to expires.

With ``wait_replicas`` set, a batch of appends is followed by WAIT in the same
round trip: its entries count as appended only once that many replicas have
them, so that an acknowledged message survives the loss of the primary.
"""

from __future__ import annotations

import hashlib
import json
import logging
import string
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import redis

log = logging.getLogger("wsk.stream")

FIELD = "m"  # the one field of an entry: the message, as JSON
FIELD_BYTES = FIELD.encode()
# shards of the log: a node with rooms in k of them reads about k/SHARDS of the
# rooms' traffic; a read names every stream it reads, up to SHARDS + 1
SHARDS = 256
# a sid as wsk's Engine.IO makes them (``[<prefix>~]<22 URL-safe characters>``),
# or python-engineio's 20; a room that may be one goes to the main stream
_SID_LENGTHS = (20, 22)
_SID_CHARS = frozenset(string.ascii_letters + string.digits + "-_")

# Append one message to the streams KEYS[2..], all with one id, from the clock
# KEYS[1]: a stream of one entry, whose XADD * makes an id after the last one and
# after Redis's time. ARGV: the message, the oldest id a stream keeps ("0": all),
# the ms an idle shard lives (0: for ever), and the main stream's key (it never
# expires). Returns the id, "<ms>-<seq>". (It costs Redis about 12 us, a plain
# XADD 2.5: the price of one order across streams.)
APPEND = """
if redis.replicate_commands then redis.replicate_commands() end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '1', '*', 'c', '')
local moved = false
local idle = tonumber(ARGV[3])
for i = 2, #KEYS do
  local added = redis.pcall('XADD', KEYS[i], 'MINID', '~', ARGV[2], id, 'm', ARGV[1])
  if type(added) == 'table' and added.err then
    -- a stream ahead of the clock (the clock was lost): the id goes after its last
    local info = redis.call('XINFO', 'STREAM', KEYS[i])
    for j = 1, #info, 2 do
      if info[j] == 'last-generated-id' then
        local ms, seq = string.match(info[j + 1], '^(%d+)-(%d+)$')
        id = ms .. '-' .. string.format('%.0f', tonumber(seq) + 1)
      end
    end
    redis.call('XADD', KEYS[i], 'MINID', '~', ARGV[2], id, 'm', ARGV[1])
    moved = true
  end
  if idle > 0 and KEYS[i] ~= ARGV[4] then redis.call('PEXPIRE', KEYS[i], idle) end
end
if moved then redis.call('XADD', KEYS[1], 'MAXLEN', '1', id, 'c', '') end
return id
"""


def may_be_sid(room: Any) -> bool:
    """Whether a room name may be the sid of a client (of any node): not a shard's room."""
    if not isinstance(room, str):
        return True  # python-socketio takes any hashable; only strings are sharded
    token = room.rpartition("~")[2]
    return len(token) in _SID_LENGTHS and _SID_CHARS.issuperset(token)


def shard_of(namespace: str, room: str, shards: int = SHARDS) -> int:
    """The shard of a room: a hash of its namespace and name."""
    return zlib.crc32(f"{namespace}\0{room}".encode()) % shards


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
    """The log of a cluster: its main stream, its shards and their clock, in one Redis."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        retention: float,
        max_entries: int,
        trims: bool = True,
        wait_replicas: int = 0,
        wait_timeout: float = 0.5,
        shard_writes: bool = True,
        shards: int = SHARDS,
    ) -> None:
        self.client = client
        # replicas that must have an append before it counts, and how long to wait for them
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = max(1, int(wait_timeout * 1000))
        # only the nodes trim: a writer that does not know the cluster's recovery
        # window (wsk-emit) must not cut what the nodes keep for it
        self.trims = trims
        self.key = key
        self.clock_key = f"{key}:clock"
        self.retention = retention
        self.max_entries = max_entries
        # emits to rooms go to their shards (off: to the main stream, as before shards)
        self.shard_writes = shard_writes
        self.shards = shards
        # the script by its sha (EVALSHA), loaded when Redis says it does not have it:
        # redis-py's pipelined scripts ask SCRIPT EXISTS first, a round trip per batch
        self._sha = hashlib.sha1(APPEND.encode(), usedforsecurity=False).hexdigest()
        # Redis's clock minus ours, in ms, from the ids it gives: entry ids are its time
        self.skew_ms: int | None = None

    def shard_key(self, shard: int) -> str:
        return f"{self.key}:{shard}"

    def shard(self, namespace: str, room: Any) -> int | None:
        """The shard of a room's emits; None for a room whose emits go to the main stream."""
        return None if may_be_sid(room) else shard_of(namespace, room, self.shards)

    def room_keys(self, namespace: str, rooms: Sequence[Any]) -> list[str]:
        """The streams that hold the emits to these rooms: their shards, or the main stream."""
        found = {self.shard(namespace, room) for room in rooms}
        if None in found or not found:
            return [self.key]
        return [self.shard_key(shard) for shard in sorted(found)]

    def keys_for(self, message: dict[str, Any]) -> list[str]:
        """The streams a message is appended to."""
        room = message.get("room")
        if not self.shard_writes or message.get("method") != "emit" or room is None:
            return [self.key]
        rooms = room if isinstance(room, list) else [room]
        return self.room_keys(message.get("namespace") or "/", rooms)

    def append(self, message: dict[str, Any]) -> Offset:
        """Add a message; its offset. Raises redis.RedisError when Redis does not take it."""
        return self.append_all([message])[0]

    def append_all(self, messages: list[dict[str, Any]]) -> list[Offset | Exception]:
        """Add messages in this order, in one round trip; each one's offset, or its error.

        Raises redis.RedisError when Redis cannot be reached at all.
        """
        # what is older than the retention goes (ids are Redis's time in ms); a writer
        # that does not trim keeps everything
        oldest, idle_ms = "0", 0
        if self.trims:
            idle_ms = int(self.retention * 1000)
            if self.skew_ms is not None:
                oldest = str(int(time.time() * 1000) + self.skew_ms - idle_ms)
        calls = []
        for message in messages:
            keys = [self.clock_key, *self.keys_for(message)]
            body = json.dumps(message, separators=(",", ":"))
            calls.append((len(keys), *keys, body, oldest, idle_ms, self.key))
        answers = self._run(calls)
        now_ms = int(time.time() * 1000)
        results: list[Offset | Exception] = []
        for entry in answers[: len(messages)]:
            if isinstance(entry, Exception):
                results.append(entry)
                continue
            offset = Offset.of_entry(entry)
            self.skew_ms = offset[0] - now_ms
            results.append(offset)
        if self.wait_replicas:
            results = self._replicated(results, answers[-1])
        return results

    def _run(self, calls: list[tuple]) -> list[Any]:
        """The append script for each call, then WAIT if asked, in one round trip; the
        script is loaded and the batch sent again when Redis had not got it (a new or
        restarted Redis: NOSCRIPT means nothing of the batch ran)."""
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                pipe.evalsha(self._sha, *call)
            if self.wait_replicas:
                pipe.wait(self.wait_replicas, self.wait_timeout_ms)
            answers = pipe.execute(raise_on_error=False)
            if attempt or not any(isinstance(a, redis.exceptions.NoScriptError) for a in answers):
                return answers
            self.client.script_load(APPEND)
        return answers

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

    def read(
        self,
        after: Offset,
        block_ms: int,
        count: int,
        keys: Sequence[str] | None = None,
        wake: str | None = None,
        starts: dict[str, Offset] | None = None,
    ) -> list[tuple[Offset, dict]]:
        """The entries after ``after`` in the streams ``keys`` (the main one by default),
        in the log's order, waiting up to ``block_ms`` for the first one.

        ``starts`` names streams to read from a later offset than ``after``. A read
        may also wait on ``wake``, a stream whose new entries end the wait and are
        not the log's.
        """
        at = str(after)
        streams = dict.fromkeys(keys or (self.key,), at)
        for key, start in (starts or {}).items():
            if key in streams and start > after:
                streams[key] = str(start)
        if wake is not None:
            streams[wake] = "$"
        answer = self.client.xread(streams, count=count, block=block_ms)
        if not answer:
            return []
        wake_key = wake.encode() if wake is not None else None
        return _merged([raw for key, raw in answer if key != wake_key], count)

    def range(
        self, after: Offset, upto: Offset, count: int, keys: Sequence[str] | None = None
    ) -> list[tuple[Offset, dict]]:
        """The first entries in (after, upto] of the streams ``keys``, in the log's order."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys or (self.key,):
            pipe.xrange(key, min=f"({after}", max=str(upto), count=count)
        return _merged(pipe.execute(), count)

    def clock(self) -> Offset:
        """The log's last id: whatever is appended from now on comes after it."""
        try:
            return Offset.parse(self.client.xinfo_stream(self.clock_key)["last-generated-id"])
        except redis.ResponseError:  # no such key: nothing was ever appended
            return ZERO

    def info(self) -> dict[str, Any]:
        """The main stream's length, first entry's id and highest id trimmed, the last id of
        the whole log, and the clock's (ZERO before the first append of this version)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xinfo_stream(self.key)
        pipe.xinfo_stream(self.clock_key)
        raw, clock = pipe.execute(raise_on_error=False)
        clock_at = ZERO
        if not isinstance(clock, Exception):  # none before the first append
            clock_at = Offset.parse(clock["last-generated-id"])
        if isinstance(raw, redis.ResponseError):  # no such key: nothing was ever appended
            raw = {}
        elif isinstance(raw, Exception):
            raise raw
        first = raw.get("first-entry")
        return {
            "length": raw.get("length", 0),
            "last": max(Offset.parse(raw.get("last-generated-id") or "0-0"), clock_at),
            "first": Offset.parse(first[0]) if first else None,
            "trimmed": Offset.parse(raw.get("max-deleted-entry-id") or "0-0"),
            "clock": clock_at,
        }

    def trim(self, keys: Sequence[str] = ()) -> None:
        """Hold the main stream, and the shards ``keys``, to ``max_entries`` each (retention
        is applied on every append)."""
        if self.trims:
            pipe = self.client.pipeline(transaction=False)
            for key in (self.key, *keys):
                pipe.xtrim(key, maxlen=self.max_entries, approximate=True)
            pipe.execute()


def _merged(streams: list[list], count: int) -> list[tuple[Offset, dict]]:
    """Entries read from several streams, as one list in the log's order.

    A stream that gave ``count`` entries may hold more: only what comes before
    its last one is certainly all there is, so the list ends there. An emit
    appended to two shards is in it once.
    """
    entries: list[tuple[Offset, dict]] = []
    cut: Offset | None = None
    for raw in streams:
        if isinstance(raw, Exception):
            raise raw
        if not raw:
            continue
        if len(raw) >= count:
            last = Offset.of_entry(raw[-1][0])
            cut = last if cut is None else min(cut, last)
        entries.extend(_entries(raw))
    if len(streams) > 1:
        entries.sort(key=lambda entry: entry[0])
        entries = [e for i, e in enumerate(entries) if i == 0 or e[0] != entries[i - 1][0]]
    if cut is not None:
        entries = [entry for entry in entries if entry[0] <= cut]
    return entries


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
