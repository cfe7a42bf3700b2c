"""The sharded stream (wsk.stream): a node reads what may concern its clients, and loses nothing.

An emit to named rooms goes to the rooms' shards, which only the nodes with
members there read; everything else goes to the main stream, which every node
reads. Real nodes, a real Redis, python-socketio's and Node's socket.io-client.
"""

from __future__ import annotations

import shutil
import time
import uuid

import pytest
import redis

from clients import NodeClient, RecordingClient
from processes import RedisServer, wait_until
from wsk.manager import ClusterManager
from wsk.stream import SHARDS, Offset, Stream, shard_of


def rooms_in_other_shards(count: int, prefix: str) -> list[str]:
    """``count`` room names, each in a shard of its own."""
    found: dict[int, str] = {}
    while len(found) < count:
        room = f"{prefix}-{uuid.uuid4().hex[:8]}"
        found.setdefault(shard_of("/", room), room)
    return list(found.values())


def read(node) -> float:
    return node.metric("wsk_stream_entries_read_total")


def emitter(cluster) -> ClusterManager:
    """A write-only manager, as wsk-emit makes it: emits to any rooms, or to a sid."""
    return ClusterManager(cluster.redis.url, "wsk", write_only=True)


@pytest.mark.parametrize("shards", [True, False], ids=["shard-writes", "main-stream-only"])
def test_a_node_reads_only_the_shards_of_its_rooms(cluster, shards):
    """With shard writes off (a rolling upgrade) every node reads everything, and still
    delivers the same: the negative control of the count."""
    cluster.start(stream_shards="yes" if shards else "no")
    node1, node2 = cluster.nodes
    busy, quiet = rooms_in_other_shards(2, "busy")
    sender = cluster.node_client(node1)
    member = cluster.node_client(node1)
    member.call("join", {"room": busy})
    bystander = cluster.node_client(node2)
    bystander.call("join", {"room": quiet})
    wait_until(lambda: node2.metric("wsk_stream_shards_read") == 1, 5, what="node2's one shard")
    before = read(node2)
    count = 300
    for seq in range(count):
        assert "offset" in sender.call("publish", {"room": busy, "data": seq})
    wait_until(lambda: len(member.received("message")) == count, 10, what="every message")
    assert [m["data"] for m in member.received("message")] == list(range(count))
    taken = read(node2) - before
    if shards:
        # heartbeats and the like, from the main stream: not the room's traffic
        assert taken < count / 5, taken
    else:
        assert taken >= count, taken
    assert bystander.received("message") == []


def test_a_join_gets_what_is_published_right_after_it(cluster):
    """A node that begins to read a shard for a join reads it from the join on: nothing
    published after the join's answer is lost, nothing before it arrives."""
    cluster.start()
    node1, node2 = cluster.nodes
    sender = cluster.node_client(node1)
    for i, room in enumerate(rooms_in_other_shards(15, "join")):
        assert "offset" in sender.call("publish", {"room": room, "data": "before"})
        joiner = cluster.node_client(node2)
        joiner.call("join", {"room": room})
        assert "offset" in sender.call("publish", {"room": room, "data": f"after-{i}"})
        wait_until(lambda j=joiner: j.received("message"), 10, what=f"the message of join {i}")
        assert [m["data"] for m in joiner.received("message")] == [f"after-{i}"]
        joiner.close()


def test_an_emit_to_rooms_of_two_shards_reaches_each_member_once(cluster):
    cluster.start()
    node1, node2 = cluster.nodes
    first, second = rooms_in_other_shards(2, "two")
    both = cluster.node_client(node2)
    both.call("join", {"room": first})
    both.call("join", {"room": second})
    one = cluster.node_client(node1)
    one.call("join", {"room": second})
    wait_until(lambda: node2.metric("wsk_stream_shards_read") == 2, 5, what="node2's shards")
    offset = emitter(cluster).emit("message", {"data": "to both"}, room=[first, second])
    for client in (both, one):
        client.wait_for("message")
    wait_until(lambda: read(node2) > 0, 5, what="node2's read")
    assert [m["data"] for m in both.received("message")] == ["to both"]
    assert [m["data"] for m in one.received("message")] == ["to both"]
    entries = redis.Redis.from_url(cluster.redis.url).xrange(
        f"wsk:stream:{shard_of('/', first)}", min=str(offset), max=str(offset)
    )
    assert len(entries) == 1  # the same id in both shards, which is how a reader sees one


def test_an_emit_to_a_sid_of_another_node_goes_through_the_main_stream(cluster):
    cluster.start()
    client = cluster.node_client(cluster.nodes[1])
    sid = client.sio.get_sid()
    assert sid.startswith("node2~")
    emitter(cluster).emit("message", {"data": "to you"}, room=sid)
    assert client.wait_for("message")["data"] == "to you"
    # a room named like a sid is not sharded either, and its members get what is sent to it
    lookalike = "x" * 22
    client.call("join", {"room": lookalike})
    emitter(cluster).emit("message", {"data": "to a lookalike"}, room=lookalike)
    client.wait_for("message", lambda m: m["data"] == "to a lookalike")


def test_a_client_in_rooms_of_two_shards_recovers_every_message_once_in_order(cluster):
    """Replay merges the main stream and the shards of the session's rooms by offset."""
    cluster.start()
    first, second = rooms_in_other_shards(2, "back")
    client = NodeClient(cluster.haproxy.url, "websocket", 60, first)
    sender = RecordingClient().connect(cluster.haproxy.url)
    try:
        wait_until(lambda: "join" in str(client.lines), 10, what="the first join")
        client.send("join", {"room": second})
        wait_until(lambda: str(client.lines).count("'join'") >= 2, 10, what="the second join")
        sent = []

        def publish(room: str | None) -> None:
            seq = len(sent)
            answer = sender.call("publish", {"room": room, "data": {"seq": seq}})
            assert "offset" in answer, answer
            sent.append((seq, Offset.parse(answer["offset"])))

        publish(first)
        publish(second)
        wait_until(lambda: len(client.events("message")) == 2, 5, what="the live messages")
        client.break_transport(reconnect_after=1.0)
        wait_until(lambda: not client.connected(), 5, what="the break")
        for room in (second, first, None, second, first, second):
            publish(room)
        wait_until(lambda: len(client.connects()) == 2, 10, what="the reconnect")
        assert client.connects()[-1]["recovered"] is True
        wait_until(lambda: len(client.events("message")) >= len(sent), 5, what="the replay")
        got = [m["data"]["seq"] for m in client.events("message") if m.get("data")]
        assert got == [seq for seq, _ in sorted(sent, key=lambda s: s[1])], got
    finally:
        sender.close()
        client.stop()


def test_appends_take_increasing_ids_from_one_clock_across_shards(tmp_path):
    server = RedisServer(tmp_path).start()
    try:
        client = redis.Redis.from_url(server.url)
        stream = Stream(client, "t:stream", retention=60, max_entries=1000)
        rooms = rooms_in_other_shards(3, "clock")
        offsets = [
            stream.append({"method": "emit", "room": r, "data": i}) for i, r in enumerate(rooms * 5)
        ]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        keys = [stream.shard_key(shard_of("/", r)) for r in rooms]
        merged = stream.read(Offset((0, 0)), 0, 100, keys)
        assert [o for o, _ in merged] == offsets
        # a read that may have more in one stream ends before what could be missing
        assert [o for o, _ in stream.read(Offset((0, 0)), 0, 2, keys)] == offsets[:4]
        # the clock lost (evicted, deleted): the next id still comes after every stream
        client.delete(stream.clock_key)
        client.xadd(keys[0], {"m": "{}"}, id=f"{offsets[-1][0] + 60_000}-0")
        later = stream.append({"method": "emit", "room": rooms[0], "data": "after"})
        assert later > Offset((offsets[-1][0] + 60_000, 0))
        assert stream.append({"method": "emit", "room": rooms[1], "data": "next"}) > later
        assert stream.info()["last"] > later
        # a Redis that forgot the script (restarted, failed over) gets it again
        client.script_flush()
        assert stream.append({"method": "emit", "room": None, "data": "again"}) > later
        assert len(stream.room_keys("/", rooms)) == 3 and SHARDS >= 3
    finally:
        server.stop()


def test_the_shards_a_node_reads_are_held_to_stream_max_entries(cluster):
    cluster.start(stream_max_entries=100)
    room = rooms_in_other_shards(1, "long")[0]
    member = cluster.node_client(cluster.nodes[0])
    member.call("join", {"room": room})
    sender = cluster.node_client(cluster.nodes[1])
    for seq in range(500):
        assert "offset" in sender.call("publish", {"room": room, "data": seq})
    wait_until(lambda: len(member.received("message")) == 500, 10, what="every message")
    shard = redis.Redis.from_url(cluster.redis.url)
    key = f"wsk:stream:{shard_of('/', room)}"
    # approximate trimming (MAXLEN ~) cuts whole radix-tree nodes of 100 entries
    wait_until(lambda: shard.xlen(key) <= 200, 15, what=f"{key} trimmed from 500")


def test_a_log_that_went_back_in_time_is_read_on_from_its_end_without_repeats(cluster):
    """A failover to a replica that lagged: Redis comes back with an older log (here, an older
    copy of its append-only file). The node reads on from the log's end, and does not take it
    for a new log to read from its start, which would deliver its shards' entries again;
    the main stream, which told the two apart before shards, has no entry here."""
    cluster.start(redis_aof=True, heartbeat_interval=600, recovery_window=0)
    node1, node2 = cluster.nodes
    room = rooms_in_other_shards(1, "lag")[0]
    member = cluster.node_client(node2)
    member.call("join", {"room": room})
    sender = cluster.node_client(node1)

    def publish(*seqs: int) -> None:
        for seq in seqs:
            assert "offset" in sender.call("publish", {"room": room, "data": seq})
        wait_until(lambda: len(member.received("message")) >= seqs[-1] + 1, 10, what=f"{seqs}")

    publish(0, 1, 2)
    data = cluster.redis.data_dir
    cluster.redis.stop()  # SIGTERM: the append-only file is written out
    shutil.copytree(data, cluster.workdir / "older")
    cluster.redis.start()
    wait_until(lambda: "offset" in sender.call("publish", {"room": room, "data": 3}), 15)
    wait_until(lambda: len(member.received("message")) == 4, 10, what="the fourth")
    resumed = node2.log().count("Reading the stream")
    cluster.redis.stop()
    shutil.rmtree(data)
    shutil.copytree(cluster.workdir / "older", data)  # the log ends before the fourth now
    cluster.redis.start()
    assert redis.Redis.from_url(cluster.redis.url).xlen("wsk:stream") == 0
    # node2 reads again, from the older log, before anything new is appended to it
    wait_until(lambda: node2.log().count("Reading the stream") > resumed, 15, what="node2's read")
    wait_until(lambda: "offset" in sender.call("publish", {"room": room, "data": 4}), 15)
    wait_until(lambda: len(member.received("message")) >= 5, 10, what="the fifth")
    time.sleep(1)  # what a reader that started over would deliver again would be here by now
    assert [m["data"] for m in member.received("message")] == [0, 1, 2, 3, 4]
    assert "a replica that lagged" in node2.log(), node2.log()[-3000:]
