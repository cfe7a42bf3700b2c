"""Where a client's session waits for it to come back: one Redis hash per session, by private id.

Socket.IO's connection-state recovery (socket.io 4.6+): the server's CONNECT
answer carries a private session id (``pid``) beside the ``sid``; a client that
reconnects sends ``{pid, offset}``, and the server restores its sid, rooms and
data and replays what it missed after ``offset``.

Here the session is in Redis from the moment it is made, not only once its
client leaves: a node may die without a word, and the client must still find
its session on any other node. The hash holds:

- ``sid``, and ``owner``: the Engine.IO session that holds it now (a node that
  lost a client only touches a session it still owns);
- ``created``: the stream offset at which the session began to receive, the
  offset of a client that has seen nothing yet;
- ``data``: the application's session dictionary, as JSON;
- ``r:<room>``: ``"<joined>"`` or ``"<joined>,<left>"``: the offsets between which
  the session was in that room, so that a replay gives it exactly what it would
  have had.

While its client is connected the hash is kept alive by its node; once the
client is gone, it lives ``window`` seconds more, then Redis forgets it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import redis

from wsk.stream import Offset

# set the owner of a session and return what it holds, or nothing if it is gone
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""
# the owner's client left: keep the session ARGV[2] ms more, or drop it (ARGV[2] = 0)
# the session left a room: its span ends here
LEFT = """
local joined = redis.call('HGET', KEYS[1], ARGV[1])
if joined and not string.find(joined, ',') then
  redis.call('HSET', KEYS[1], ARGV[1], joined .. ',' .. ARGV[2])
end
return 1
"""
RELEASE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], 'owner', '')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
"""


def new_pid() -> str:
    """A private session id: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


@dataclass
class Record:
    """A session as Redis keeps it."""

    sid: str
    created: Offset
    data: dict[str, Any] = field(default_factory=dict)
    # room -> (joined, left or None)
    rooms: dict[str, tuple[Offset, Offset | None]] = field(default_factory=dict)

    def receives(self, offset: Offset, room: Any, skip: Any) -> bool:
        """Whether a message at ``offset`` to ``room`` (str, list or None) reached this session."""
        if offset <= self.created:
            return False
        if skip and (self.sid == skip or (isinstance(skip, list) and self.sid in skip)):
            return False
        if room is None:
            return True
        for one in room if isinstance(room, list) else (room,):
            if one == self.sid:
                return True
            span = self.rooms.get(one)
            if span and span[0] < offset and (span[1] is None or offset <= span[1]):
                return True
        return False

    @property
    def current_rooms(self) -> list[str]:
        return [room for room, (_, left) in self.rooms.items() if left is None]


class Sessions:
    """The sessions of a cluster in Redis, kept for ``window`` seconds after their client left."""

    def __init__(self, client: redis.Redis, prefix: str, window: float) -> None:
        self.client = client
        self.prefix = prefix
        self.window = window
        # while a client is connected its hash lives this long, renewed at a third of it
        self.alive_ms = int((window + max(5.0, window / 2)) * 1000)
        self.renew_every = max(1.0, self.alive_ms / 3000)
        self._claim = client.register_script(CLAIM)
        self._left = client.register_script(LEFT)
        self._release = client.register_script(RELEASE)

    def key(self, pid: str) -> str:
        return f"{self.prefix}:session:{pid}"

    def create_all(self, new: list[tuple[str, str, str, Offset]]) -> None:
        """Keep new sessions (pid, sid, owner, created: each has seen nothing after
        ``created``), in one round trip; each one whole or not at all."""
        pipe = self.client.pipeline()
        for pid, sid, owner, created in new:
            key = self.key(pid)
            fields = {"sid": sid, "owner": owner, "created": str(created), "data": "{}"}
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, self.alive_ms)
        pipe.execute()

    def joined(self, pid: str, room: str, at: Offset) -> None:
        self.client.hset(self.key(pid), f"r:{room}", str(at))

    def left(self, pid: str, room: str, at: Offset) -> None:
        self._left(keys=[self.key(pid)], args=[f"r:{room}", str(at)])

    def save_data(self, pid: str, data: dict[str, Any]) -> None:
        self.client.hset(self.key(pid), "data", json.dumps(data, separators=(",", ":")))

    def claim(self, pid: str, owner: str) -> Record | None:
        """Make ``owner`` the holder of a session and return it; None when it is gone."""
        raw = self._claim(keys=[self.key(pid)], args=[owner, self.alive_ms])
        if not raw:
            return None
        values = {
            raw[i].decode(): raw[i + 1].decode("utf-8", "replace") for i in range(0, len(raw), 2)
        }
        rooms = {}
        for name, span in values.items():
            if name.startswith("r:"):
                joined, _, left = span.partition(",")
                rooms[name[2:]] = (Offset.parse(joined), Offset.parse(left) if left else None)
        try:
            data = json.loads(values.get("data") or "{}")
        except ValueError:
            data = {}
        return Record(
            sid=values["sid"],
            created=Offset.parse(values["created"]),
            data=data if isinstance(data, dict) else {},
            rooms=rooms,
        )

    def release(self, pid: str, owner: str, keep: bool) -> None:
        """The owner's client is gone: keep the session ``window`` seconds more, or drop it."""
        self.release_all([(pid, owner, keep)])

    def release_all(self, ended: list[tuple[str, str, bool]]) -> None:
        """``release`` for many sessions, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for pid, owner, keep in ended:
            args = [owner, int(self.window * 1000) if keep else 0]
            self._release(keys=[self.key(pid)], args=args, client=pipe)
        pipe.execute()

    def renew(self, pids: list[str]) -> None:
        """Keep the sessions of connected clients alive."""
        pipe = self.client.pipeline(transaction=False)
        for pid in pids:
            pipe.pexpire(self.key(pid), self.alive_ms)
        pipe.execute()
