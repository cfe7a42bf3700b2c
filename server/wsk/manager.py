"""The client manager that joins the nodes of a cluster, over the cluster's stream.

python-socketio's managers keep a node's clients and rooms (``socketio.Manager``)
and relay emits between nodes (``RedisManager``, over Redis pub/sub: a message
published while a node is away is lost to it, and an emit is "sent" whether or
not Redis took it). This one keeps the clients and rooms as python-socketio's
own, and relays everything through ``wsk.stream``:

- an emit to a room or to everyone is appended to the stream first; its offset
  is what the emit returns, and an emit Redis did not take raises
  ``NotDelivered``: an acknowledgement is a promise;
- every node, the emitting one included, delivers entries only as it reads them,
  in the stream's order, each event packet carrying its offset as its last
  argument when recovery is on (the Socket.IO protocol's connection-state
  recovery);
- a node that lost Redis resumes reading where it stopped;
- ``restore`` gives a reconnecting client back its session, on any node, and
  replays what it missed, without a gap or a duplicate (``wsk.recovery``).
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import eventlet
import redis
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from wsk import redisconn
from wsk.batches import Batches
from wsk.metrics import Metrics, event_label
from wsk.recovery import Record, Sessions, new_pid
from wsk.redisurl import hide_password
from wsk.stream import ZERO, Offset, Stream, Unreplicated

log = logging.getLogger("wsk.cluster")

# Seconds the reader waits before its first retry, and at most between two.
RETRY_FIRST_WAIT = 0.5
RETRY_MAX_WAIT = 2.0
# appends that go to Redis in one round trip at most
APPEND_BATCH = 500
# entries one read takes; entries delivered before the hub gets a turn
READ_COUNT = 500
DELIVER_SLICE = 50
# milliseconds a read waits for new entries
READ_BLOCK_MS = 2000
# entries a replay reads at once, and packets it lets wait for a client at most
REPLAY_BATCH = 500
REPLAY_BACKLOG = 1000
# seconds between two looks at the stream's length and age
WATCH_EVERY = 5.0
# the stream keeps entries this much longer than the recovery window
RETENTION_MARGIN = 30.0


class NotDelivered(ConnectionError):
    """Redis did not take a message: nobody will receive it."""


class NotReplicated(NotDelivered):
    """The primary took a message, but too few replicas had it (--redis-wait-replicas).

    It is in the stream, so its receivers may still get it; it is not promised, as
    it would be lost if the primary failed now.
    """


class RecoveryFailed(Exception):
    """A session cannot be restored; ``reason`` is the metric's label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ClusterManager(socketio.Manager):
    """Relays a node's emits and room changes through the cluster's stream, in one order."""

    def __init__(
        self,
        url: str,
        channel: str,
        recovery_window: float = 0,
        stream_max_entries: int = 1_000_000,
        metrics: Metrics | None = None,
        write_only: bool = False,
        hold_limit: int = 10_000,
        wait_replicas: int = 0,
        wait_timeout: float = 0.5,
        shard_writes: bool = True,
    ) -> None:
        super().__init__()
        self.url_for_logs = hide_password(url)
        self.metrics = metrics
        self.write_only = write_only
        self.recovery_window = recovery_window
        # live events held for one client while it is restored, at most
        self.hold_limit = hold_limit
        self.writer = redisconn.pool(url)
        self.stream = Stream(
            self.writer,
            f"{channel}:stream",
            retention=max(recovery_window, 30.0) + RETENTION_MARGIN,
            max_entries=stream_max_entries,
            trims=not write_only,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            shard_writes=shard_writes,
        )
        # the shards this node reads: shard -> its rooms that have a member here
        self.shard_rooms: dict[int, int] = {}
        self.read_keys: list[str] | None = None  # main stream and shards read, when known
        # shards begun for a join, read from the log's last id at the join, not from
        # ``position``: what came before the join is not for its room's new member
        self.shard_starts: dict[str, Offset] = {}
        # counts the shards this node began to read: a read that was asked before
        # one began is not delivered, but made again with it
        self.shards_added = 0
        # a stream of this node's own whose entries end the reader's wait
        self.wake_key = f"{self.stream.key}:wake:{uuid.uuid4().hex}"
        self.wake_pending = False
        self.sessions = Sessions(self.writer, channel, recovery_window) if recovery_window else None
        self.reader_url = url
        # the offset of the last entry this node delivered; None before Redis answered
        self.position: Offset | None = None
        # sids whose live packets wait for their replay to end, and those that must
        # not get packets at or below an offset (a replay went further than the reader)
        self.holding: dict[str, list[tuple[Offset, list[eio_packet.Packet]]]] = {}
        self.floors: dict[str, Offset] = {}
        # sid -> pid, for the sessions of this node's clients
        self.pids: dict[str, str] = {}
        # Redis writes, each kind batched in the order it was asked for: appends (the
        # order of a client's events is their order in the stream), new sessions, and
        # the sessions of clients that left
        self.appends: Batches[dict[str, Any]] = Batches(self._append_now, APPEND_BATCH)
        self.creates: Batches[tuple[str, str, str, Offset]] = Batches(
            self._create_now, APPEND_BATCH
        )
        self.releases: Batches[tuple[str, str, bool]] = Batches(self._release_now, APPEND_BATCH)

    # -- starting

    def initialize(self) -> None:
        super().initialize()
        if not self.write_only:
            self.server.start_background_task(self._read_forever)
            self.server.start_background_task(self._watch)

    def pre_connect(self, eio_sid: str, namespace: str, sid: str | None = None) -> str | None:
        """python-socketio's, without a room of its own for the client; a restored session
        keeps the sid it had.

        python-socketio puts every client in a room named after its sid, a bidict
        for each client (about 400 bytes). The sid is in the namespace's table
        already: ``get_participants`` and ``get_rooms`` answer for sid rooms from it.
        """
        if self.sid_from_eio_sid(eio_sid, namespace) is not None:
            return None  # this connection is in the namespace already
        sid = sid or self.server.eio.generate_id()
        self.basic_enter_room(sid, namespace, None, eio_sid=eio_sid)
        self.pending_connect.setdefault(namespace, []).append(sid)
        return sid

    def get_participants(self, namespace: str, room: Any) -> Iterator[tuple[str, str]]:
        clients = self.rooms.get(namespace, {}).get(None)
        if clients is None:
            return
        rooms = room if isinstance(room, list | tuple) else [room]
        if room is not None and any(one in clients for one in rooms):
            found = {}
            for one in rooms:
                if one in clients:  # the room of a client's own sid
                    found[one] = clients[one]
                else:
                    found.update(self.rooms[namespace].get(one, {}))
            yield from found.items()
            return
        yield from super().get_participants(namespace, room)

    def get_rooms(self, sid: str, namespace: str) -> list[str]:
        rooms = super().get_rooms(sid, namespace)
        if sid in self.rooms.get(namespace, {}).get(None, {}):
            rooms.append(sid)
        return rooms

    # -- the shards this node reads: those of its rooms

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        new = room is not None and room not in self.rooms.get(namespace, {})
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        shard = self.stream.shard(namespace, room) if new else None
        if shard is not None:
            self.shard_rooms[shard] = self.shard_rooms.get(shard, 0) + 1
            if self.shard_rooms[shard] == 1:
                self.read_keys = None
                self.shards_added += 1
                self._wake_reader()

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        had = room is not None and room in self.rooms.get(namespace, {})
        super().basic_leave_room(sid, namespace, room)
        gone = had and room not in self.rooms.get(namespace, {})
        shard = self.stream.shard(namespace, room) if gone else None
        if shard is not None:
            left = self.shard_rooms.get(shard, 0) - 1
            if left > 0:
                self.shard_rooms[shard] = left
            else:  # read no more from the next read on; nothing to wake for
                self.shard_rooms.pop(shard, None)
                self.read_keys = None

    def enter_restored(self, sid: str, namespace: str, room: Any, since: Offset) -> None:
        """Put a restored client back into a room; its live events follow ``since``.

        Its replay ends at ``since``: a shard that a join here began to read from a
        later offset is read from ``since`` instead, so that nothing in between is
        lost to it (the join's new member may then get a few events from just
        before its join).
        """
        self.basic_enter_room(sid, namespace, room)
        shard = self.stream.shard(namespace, room)
        if shard is not None:
            key = self.stream.shard_key(shard)
            if self.shard_starts.get(key, ZERO) > since:
                self.shard_starts[key] = since

    def _shard_start(self, namespace: str, room: Any) -> Offset:
        """Where a join into ``room`` begins to receive from its shard (ZERO: at ``position``).

        A shard that this node does not read yet is read from the log's last id
        (one round trip; redis.RedisError when Redis does not answer).
        """
        shard = self.stream.shard(namespace, room)
        if shard is None or room in self.rooms.get(namespace, {}):
            return ZERO
        key = self.stream.shard_key(shard)
        if shard not in self.shard_rooms:
            self.shard_starts[key] = max(self.stream.clock(), self.shard_starts.get(key, ZERO))
        return self.shard_starts.get(key, ZERO)

    def _keys_to_read(self) -> list[str]:
        if self.read_keys is None:
            shards = sorted(self.shard_rooms)
            self.read_keys = [self.stream.key, *map(self.stream.shard_key, shards)]
            if self.metrics is not None:
                self.metrics.stream_shards_read.set(len(shards))
        return self.read_keys

    def _wake_reader(self) -> None:
        """End the reader's wait, so that its next read has the new shard (in the background:
        a read that does not end waits READ_BLOCK_MS at most)."""
        if self.write_only or self.wake_pending or self.server is None:
            return
        self.wake_pending = True
        self.server.start_background_task(self._wake_now)

    def _wake_now(self) -> None:
        self.wake_pending = False
        try:
            pipe = self.writer.pipeline(transaction=False)
            pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1)
            pipe.pexpire(self.wake_key, int(READ_BLOCK_MS * 10))
            pipe.execute()
        except redis.RedisError as exc:
            log.debug("cannot wake the reader (%s): it reads the new shard within 2 s", exc)

    # -- writing

    def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> Offset | None:
        """Emit to a client, a room or everyone of the cluster; the offset of the emit.

        Raises NotDelivered when Redis does not take it. An emit with a callback
        goes to a client of this node only, outside the stream.
        """
        room = to or room
        namespace = namespace or "/"
        if callback is not None or kwargs.get("ignore_queue"):
            return super().emit(
                event, data, namespace, room=room, skip_sid=skip_sid, callback=callback
            )
        args = list(data) if isinstance(data, tuple) else [data]
        binary = sio_packet.Packet.data_is_binary(args)
        if binary:
            args, attachments = sio_packet.Packet.deconstruct_binary(args)
            args = [args, *[base64.b64encode(a).decode() for a in attachments]]
        return self._append(
            {
                "method": "emit",
                "event": event,
                "data": args,
                "binary": binary,
                "namespace": namespace,
                "room": room,
                "skip_sid": skip_sid,
            }
        )

    def _append(self, message: dict[str, Any]) -> Offset:
        """Append to the stream in the order of the calls; the offset, or NotDelivered.

        A node's appends go out in batches, one round trip each, from one greenlet
        (``wsk.batches``): the order in which a client's events were handled is the
        order of their messages in the stream (a pool of connections would let them
        overtake each other), and a burst costs few round trips.
        """
        write_now = self.write_only  # wsk-emit: one message, nothing to batch
        result = self._append_now([message])[0] if write_now else self.appends.submit(message)
        if isinstance(result, Unreplicated):
            # in the stream, so it may still be delivered, but it would not survive a failover
            log.error("Not acknowledging an append to %s: %s", self.url_for_logs, result)
            if self.metrics is not None:
                self.metrics.redis_publish_failures.inc()
                self.metrics.redis_unreplicated.inc()
            raise NotReplicated(f"Redis at {self.url_for_logs} did not replicate it: {result}")
        if isinstance(result, Exception):
            log.error("Cannot append to the stream at %s: %s", self.url_for_logs, result)
            if self.metrics is not None:
                self.metrics.redis_publish_failures.inc()
            raise NotDelivered(f"Redis at {self.url_for_logs} did not take it: {result}")
        return result

    def _append_now(self, messages: list[dict[str, Any]]) -> list[Offset | Exception]:
        try:
            return self.stream.append_all(messages)
        except redis.RedisError as exc:
            return [exc] * len(messages)

    def can_disconnect(self, sid: str, namespace: str) -> bool:
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            return super().can_disconnect(sid, namespace)
        self._append({"method": "disconnect", "sid": sid, "namespace": namespace or "/"})
        return False

    def enter_room(self, sid: str, namespace: str, room: str, eio_sid: str | None = None) -> None:
        """Put a client into a room; its session remembers from which offset on."""
        if not (self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace)):
            self._append({"method": "enter_room", "sid": sid, "room": room, "namespace": namespace})
            return
        if room == sid:
            return  # a client is in the room of its own sid without one (pre_connect)
        at = max(self.position or ZERO, self._shard_start(namespace, room))
        already = room in self.get_rooms(sid, namespace)
        # in the room from this offset on, with nothing in between: then remembered
        super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        pid = self.pids.get(sid)
        if pid is not None and not already and room != sid:
            try:
                self.sessions.joined(pid, room, at)
            except redis.RedisError:
                super().leave_room(sid, namespace, room)  # not joined, as the client is told
                raise

    def leave_room(self, sid: str, namespace: str, room: str) -> None:
        if not (self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace)):
            self._append({"method": "leave_room", "sid": sid, "room": room, "namespace": namespace})
            return
        was_in = room in self.get_rooms(sid, namespace)
        at = self.position or ZERO
        super().leave_room(sid, namespace, room)
        pid = self.pids.get(sid)
        if pid is not None and was_in:
            try:
                self.sessions.left(pid, room, at)
            except redis.RedisError:
                super().enter_room(sid, namespace, room)  # still in it, as the client is told
                raise

    def close_room(self, room: str, namespace: str) -> None:
        self._append({"method": "close_room", "room": room, "namespace": namespace or "/"})

    # -- reading, in the stream's order

    def _read_forever(self) -> None:
        wait = RETRY_FIRST_WAIT
        stream: Stream | None = None
        failing = False
        while True:
            try:
                if stream is None:  # its one connection is opened here, and kept
                    reader = redisconn.reader(self.reader_url)
                    stream = Stream(
                        reader, self.stream.key, self.stream.retention, self.stream.max_entries
                    )
                if self.position is None or failing:
                    self._catch_up(stream)
                added = self.shards_added
                if self.shard_starts:  # a shard's start that is behind is no longer needed
                    self.shard_starts = {
                        k: at for k, at in self.shard_starts.items() if at > self.position
                    }
                entries = stream.read(
                    self.position,
                    READ_BLOCK_MS,
                    READ_COUNT,
                    self._keys_to_read(),
                    wake=self.wake_key,
                    starts=self.shard_starts,
                )
                if self.metrics is not None and entries:
                    self.metrics.stream_entries_read.inc(len(entries))
                if failing:
                    log.warning("Reading the stream at %s again", self.url_for_logs)
                    failing = False
                wait = RETRY_FIRST_WAIT
            except redis.RedisError as exc:
                if not failing:
                    log.error("Cannot read the stream at %s (%s); retrying", self.url_for_logs, exc)
                failing = True
                if stream is not None:  # a new connection for the next try (redisconn.reader)
                    redisconn.close(stream.client)
                    stream = None
                time.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_WAIT)
                continue
            for count, (offset, message) in enumerate(entries, 1):
                if self.shards_added != added:
                    # a join began a shard since this read was asked: what follows is
                    # read again from here, with that shard
                    break
                try:
                    self._deliver(offset, message)
                except Exception:
                    log.exception("stream entry %s could not be delivered", offset)
                self.position = offset
                if count % DELIVER_SLICE == 0:
                    eventlet.sleep(0)

    def _catch_up(self, stream: Stream) -> None:
        """Start, or resume after an error, from the right offset."""
        info = stream.info()
        last = info["last"]
        if self.position is None:
            self.position = last  # a node starts with what comes next
        elif last < self.position and (
            info["clock"] > ZERO or (info["first"] is not None and info["first"] <= self.position)
        ):
            # the same log, ending before what this node read: a failover to a replica
            # that had not received the last entries. Those are gone; what the new
            # primary appends comes after its last entry, whatever its clock says. (A
            # log that Redis lost has no clock until its first append, whose id is
            # Redis's time, after what this node read.)
            log.warning(
                "The stream at %s ends at %s, before %s that this node read (a failover to "
                "a replica that lagged); reading on from its end",
                self.url_for_logs,
                last,
                self.position,
            )
            self.position = last
        elif last < self.position:
            # the stream is younger than what this node read: Redis lost it (no
            # persistence) and began a new one; read that one from its start
            log.warning(
                "The stream at %s was reset (its last entry %s is before %s); reading it anew",
                self.url_for_logs,
                last,
                self.position,
            )
            self.position = ZERO

    def _deliver(self, offset: Offset, message: dict[str, Any]) -> None:
        method = message.get("method")
        namespace = message.get("namespace") or "/"
        if method == "emit":
            self._deliver_emit(offset, message, namespace)
        elif method == "disconnect":
            sid = message.get("sid")
            if self.is_connected(sid, namespace):
                self.server.disconnect(sid=sid, namespace=namespace, ignore_queue=True)
        elif method in ("enter_room", "leave_room"):
            sid, room = message.get("sid"), message.get("room")
            if self.is_connected(sid, namespace) and isinstance(room, str):
                getattr(self, method)(sid, namespace, room)
        elif method == "close_room":
            for sid, _ in list(self.get_participants(namespace, message.get("room"))):
                self.leave_room(sid, namespace, message.get("room"))

    def _deliver_emit(self, offset: Offset, message: dict[str, Any], namespace: str) -> None:
        if namespace not in self.rooms:
            return
        room = message.get("room")
        skip = message.get("skip_sid")
        skip = skip if isinstance(skip, list) else [skip]
        # encoded once, for the first recipient: a node without one (the room's
        # members are all on other nodes) neither encodes nor counts it
        eio_packets: list[eio_packet.Packet] | None = None
        holding, floors = self.holding, self.floors
        send = self.server.eio.send_packet
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            if eio_packets is None:
                eio_packets = self._packets(offset, message, namespace)
                if self.metrics is not None:
                    self.metrics.events_out.labels(event_label(str(message.get("event")))).inc()
            if holding and sid in holding:
                held = holding[sid]
                held.append((offset, eio_packets))
                if len(held) > self.hold_limit:
                    del holding[sid]  # it cannot catch up: it is sent away to try again
                    self.server.send_away(eio_sid)
                continue
            if floors and sid in floors:
                if offset <= floors[sid]:
                    continue
                del floors[sid]
            for pkt in eio_packets:
                send(eio_sid, pkt)

    def _packets(
        self, offset: Offset, message: dict[str, Any], namespace: str
    ) -> list[eio_packet.Packet]:
        """The Engine.IO packets of an emit, encoded once for all its recipients."""
        data = message.get("data")
        if not isinstance(data, list):
            data = [data]
        if message.get("binary"):
            attachments = [base64.b64decode(a) for a in data[1:]]
            data = sio_packet.Packet.reconstruct_binary(data[0], attachments)
        args = [message.get("event"), *data]
        if self.sessions is not None:
            args.append(str(offset))
        encoded = self.server.packet_class(
            sio_packet.EVENT, namespace=namespace, data=args
        ).encode()
        if not isinstance(encoded, list):
            encoded = [encoded]
        return [eio_packet.Packet(eio_packet.MESSAGE, part) for part in encoded]

    # -- sessions

    def open_session(self, sid: str, owner: str) -> str | None:
        """Keep a new session in Redis; its pid, or None when recovery is off.

        With recovery on, every client gets a pid, which tells it that events carry
        offsets; a session Redis could not keep (Redis away, or the stream not read
        yet) just cannot be recovered later (``unknown_session``).
        """
        if self.sessions is None:
            return None
        pid = new_pid()
        if self.position is None:
            log.warning("the session of %s cannot recover: the stream was not read yet", sid)
            return pid
        # connects that arrive together share one round trip
        failed = self.creates.submit((pid, sid, owner, self.position))
        if isinstance(failed, Exception):
            log.warning(
                "cannot keep the session of %s in Redis (%s): it cannot recover", sid, failed
            )
            return pid
        self.pids[sid] = pid
        return pid

    def _create_now(self, new: list[tuple[str, str, str, Offset]]) -> list[None]:
        self.sessions.create_all(new)
        return [None] * len(new)

    def claim_session(self, pid: Any, offset: Any, owner: str) -> tuple[Record, Offset]:
        """The session ``pid`` and the offset to replay from; RecoveryFailed with a reason."""
        if self.sessions is None:
            raise RecoveryFailed("disabled", "recovery is off")
        if not isinstance(pid, str) or not 0 < len(pid) <= 64:
            raise RecoveryFailed("unknown_session", "not a session id")
        try:
            record = self.sessions.claim(pid, owner)
            info = self.stream.info()
        except redis.RedisError as exc:
            raise RecoveryFailed("redis", str(exc)) from None
        if record is None:
            raise RecoveryFailed("unknown_session", "no such session, or it expired")
        if offset is None:
            after = record.created  # a client that had received nothing yet
        else:
            try:
                after = Offset.parse(offset)
            except ValueError as exc:
                raise RecoveryFailed("bad_offset", str(exc)) from None
            after = max(after, record.created)
        if after > info["last"]:
            raise RecoveryFailed("bad_offset", f"{after} is past the stream's last entry")
        if info["trimmed"] > after:
            raise RecoveryFailed("gap", f"the stream no longer holds what followed {after}")
        return record, after

    def hold(self, sid: str) -> Offset:
        """Let a client's live packets wait until ``release``; the offset they start after."""
        self.holding[sid] = []
        return self.position or ZERO

    def replay(self, sid: str, eio_sid: str, record: Record, after: Offset, upto: Offset) -> int:
        """Send a restored client what it missed in (after, upto]; how many events.

        Batches go out as the client takes them, so that a long replay waits for a
        slow client instead of piling up for it.
        """
        sent = 0
        keys = sorted(
            {self.stream.key, *(k for r in record.rooms for k in self.stream.room_keys("/", [r]))}
        )
        while after < upto:
            entries = self.stream.range(after, upto, REPLAY_BATCH, keys)
            if not entries:
                break
            for offset, message in entries:
                after = offset
                if message.get("method") != "emit" or (message.get("namespace") or "/") != "/":
                    continue
                if record.receives(offset, message.get("room"), message.get("skip_sid")):
                    for pkt in self._packets(offset, message, "/"):
                        self.server.eio.send_packet(eio_sid, pkt)
                    sent += 1
            while True:
                sock = self.server.eio.sockets.get(eio_sid)
                if sock is None or sock.closed:
                    return sent
                if sock.queue.qsize() <= REPLAY_BACKLOG:
                    break
                eventlet.sleep(0.01)
        return sent

    def release(self, sid: str, eio_sid: str, seen: Offset) -> None:
        """Send what waited while the client was restored, and let live packets flow again.

        ``seen`` is the last offset the client has: nothing at or below it goes
        out again, from what waited nor from what the reader delivers next.
        """
        for offset, packets in self.holding.pop(sid, []):
            if offset > seen:
                for pkt in packets:
                    self.server.eio.send_packet(eio_sid, pkt)
        if seen > (self.position or ZERO):
            self.floors[sid] = seen

    def give_back(self, pid: str, owner: str) -> None:
        """A claimed session whose client left before it was restored waits for it again."""
        self.releases.post((pid, owner, True))

    def end_session(self, sid: str, owner: str, recoverable: bool) -> None:
        """A client left: keep its session for the window if it may come back, else drop it."""
        pid = self.pids.pop(sid, None)
        self.holding.pop(sid, None)
        self.floors.pop(sid, None)
        if pid is None or self.sessions is None:
            return
        # in the background, in batches: a drain ends thousands of sessions at once, and
        # must not wait on Redis for each (a session Redis does not hear of still lives
        # its whole time, and a dropped one expires)
        self.releases.post((pid, owner, recoverable))

    def _release_now(self, ended: list[tuple[str, str, bool]]) -> list[None]:
        try:
            self.sessions.release_all(ended)
        except redis.RedisError as exc:
            log.warning("cannot release %d sessions in Redis (%s)", len(ended), exc)
        return [None] * len(ended)

    def save_data(self, sid: str, data: dict[str, Any]) -> None:
        pid = self.pids.get(sid)
        if pid is not None:
            self.sessions.save_data(pid, data)

    # -- watching

    def _watch(self) -> None:
        """Keep the sessions of connected clients alive, the stream trimmed, its figures fresh."""
        renewed = 0.0
        while True:
            time.sleep(
                WATCH_EVERY
                if self.sessions is None
                else min(WATCH_EVERY, self.sessions.renew_every)
            )
            try:
                now = time.monotonic()
                if self.sessions is not None and now - renewed >= self.sessions.renew_every:
                    self.sessions.renew(list(self.pids.values()))
                    renewed = now
                self.stream.trim(self._keys_to_read()[1:])
                info = self.stream.info()
            except redis.RedisError:
                continue  # the reader says so
            if self.metrics is not None:
                self.metrics.stream_length.set(info["length"])
                first = info["first"]
                age = time.time() - first[0] / 1000 if first else 0
                self.metrics.stream_oldest_age.set(max(0.0, age))
