"""Redis Sentinel: nodes and wsk-emit find the primary through the sentinels, follow a failover."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid

import pytest
import socketio

from processes import BIN, WskNode, wait_until
from sentinels import NODE_PASSWORD, NODE_USER, SentinelGroup, ask


@pytest.fixture
def group(tmp_path, request):
    group = SentinelGroup(tmp_path).start()
    yield group
    group.stop()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(group.logs())


def relayed(sender, receiver) -> bool:
    marker = uuid.uuid4().hex
    try:
        ack = sender.call("publish", {"data": marker})
        if "error" in ack:
            return False
        receiver.wait_for("message", lambda m: m["data"] == marker, timeout=1)
    except (AssertionError, TimeoutError, socketio.exceptions.TimeoutError):
        return False  # an ack waits up to 5 s for a primary that went away
    return True


def emit(url: str, marker: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "wsk-emit", "--redis-url", url, *flags, "news", marker],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_nodes_follow_a_failover_of_the_primary_without_a_restart(cluster, group, tmp_path):
    url = group.url()
    cluster.nodes = [WskNode(tmp_path, f"node{i}", url).start() for i in (1, 2)]
    a = cluster.node_client(cluster.nodes[0])
    b = cluster.node_client(cluster.nodes[1])
    assert relayed(a, b)
    marker = uuid.uuid4().hex
    assert emit(url, f'"{marker}"').returncode == 0
    b.wait_for("news", lambda data: data == marker)
    pids = [node.proc.pid for node in cluster.nodes]

    killed = time.monotonic()
    group.primary.signal(signal.SIGKILL)  # the primary dies without a word
    wait_until(
        lambda: all(s.primary_port() == group.replica.port for s in group.sentinels),
        30,
        what="the sentinels to promote the replica",
    )
    promoted = time.monotonic() - killed
    wait_until(lambda: relayed(a, b), 30, what="a publish on node1 to reach node2 again")
    print(f"promoted after {promoted:.1f} s, relay again after {time.monotonic() - killed:.1f} s")
    wait_until(lambda: relayed(b, a), 10, what="a publish on node2 to reach node1 again")
    wait_until(
        lambda: all(n.health()[0] == 200 for n in cluster.nodes), 10, what="both nodes healthy"
    )

    # wsk-emit finds the new primary through the same URL
    marker = uuid.uuid4().hex
    result = emit(url, f'"{marker}"')
    assert result.returncode == 0, result.stderr
    a.wait_for("news", lambda data: data == marker)
    b.wait_for("news", lambda data: data == marker)
    assert [node.proc.pid for node in cluster.nodes] == pids
    assert a.sio.connected and b.sio.connected
    # the password never reaches the log
    assert NODE_PASSWORD not in cluster.nodes[0].log()
    assert f"redis+sentinel://{NODE_USER}:***@" in cluster.nodes[0].log()


def test_the_nodes_user_may_ask_a_sentinel_where_the_primary_is_and_nothing_more(group):
    import redis

    from sentinels import SERVICE

    sentinel = group.sentinels[0]
    as_node = {"user": NODE_USER, "password": NODE_PASSWORD}
    address = ask(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE, **as_node)
    assert int(address[1]) == group.primary.port
    for command in (["SENTINEL", "FAILOVER", SERVICE], ["SENTINEL", "REMOVE", SERVICE]):
        with pytest.raises(redis.exceptions.NoPermissionError):
            ask(sentinel.port, *command, **as_node)


def test_wsk_emit_says_so_when_no_sentinel_answers(tmp_path):
    from processes import free_port

    url = f"redis+sentinel://{NODE_USER}:{NODE_PASSWORD}@127.0.0.1:{free_port()}/wsk/0"
    result = emit(url, '"x"')
    assert result.returncode == 1
    assert result.stderr == (
        f"wsk-emit: error: cannot publish to Redis at "
        f"redis+sentinel://{NODE_USER}:***@127.0.0.1:{url.rsplit(':', 1)[1]}\n"
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+sentinel://127.0.0.1:26379", "names its primary"),
        ("redis+sentinel://127.0.0.1:26379/wsk/zero", "database after the service"),
        ("redis+sentinel://127.0.0.1:99999/wsk", "a port is a number from 1 to 65535"),
        ("redis+sentinel://a:1,/wsk", "has no host"),
    ],
)
def test_a_bad_sentinel_url_stops_the_node_with_one_line(url, reason):
    result = subprocess.run(
        [BIN / "wsk-server", "--redis-url", url], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.startswith("wsk-server: error: ") and reason in result.stderr
    assert result.stderr.count("\n") == 1


def test_nodes_leave_a_primary_that_stops_answering_without_closing_its_connections(
    cluster, group, tmp_path
):
    """A frozen primary (SIGSTOP) is what a host that lost power looks like: no FIN, no RST."""
    url = group.url()
    cluster.nodes = [WskNode(tmp_path, f"node{i}", url).start() for i in (1, 2)]
    a = cluster.node_client(cluster.nodes[0])
    b = cluster.node_client(cluster.nodes[1])
    assert relayed(a, b)

    frozen = time.monotonic()
    group.primary.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: relayed(a, b), 40, what="a publish on node1 to reach node2 again")
        wait_until(lambda: relayed(b, a), 10, what="a publish on node2 to reach node1 again")
        print(f"relay again {time.monotonic() - frozen:.1f} s after the primary froze")
        assert all(s.primary_port() == group.replica.port for s in group.sentinels)
    finally:
        group.primary.signal(signal.SIGKILL)


def test_with_redis_wait_replicas_a_publish_is_acknowledged_only_once_a_replica_has_it(
    cluster, group, tmp_path
):
    """--redis-wait-replicas 1: an ack means the entry is on a replica; without one, an error."""
    url = group.url()
    # its heartbeats (appends too) far apart, so that only the publishes below count
    waiting = WskNode(
        tmp_path,
        "node1",
        url,
        redis_wait_replicas=1,
        redis_wait_timeout=0.3,
        heartbeat_interval=600,
    )
    trusting = WskNode(tmp_path, "node2", url)  # the primary's word is enough
    cluster.nodes = [waiting.start(), trusting.start()]
    a = cluster.node_client(waiting)
    b = cluster.node_client(trusting)

    marker = uuid.uuid4().hex
    ack = a.call("publish", {"data": marker})
    assert set(ack) == {"node", "offset"}, ack
    # acknowledged: the replica has the entry already, not only the primary
    entries = ask(group.replica.port, "XRANGE", "wsk:stream", ack["offset"], ack["offset"])
    assert len(entries) == 1 and marker in str(entries[0])
    b.wait_for("message", lambda m: m["data"] == marker)

    group.replica.signal(signal.SIGSTOP)  # a replica that takes nothing more
    try:
        refused = a.call("publish", {"data": "unreplicated"})
        assert refused == {
            "error": "not acknowledged: too few of the cluster's Redis replicas had it"
        }
        assert waiting.metric("wsk_redis_unreplicated_total") == 1
        assert waiting.metric("wsk_redis_publish_failures_total") == 1
        assert waiting.log().count("Not acknowledging an append to") == 1
        assert "Traceback" not in waiting.log()
        # the node that does not wait still acknowledges on the primary's word
        assert set(b.call("publish", {"data": "trusted"})) == {"node", "offset"}
        # and wsk-emit, told to wait, says it was not acknowledged
        result = emit(url, '"x"', "--redis-wait-replicas", "1")
        assert result.returncode == 1
        assert result.stderr.startswith("wsk-emit: error: published, but not acknowledged: ")
        assert "0 of 1 replicas had it within 500 ms" in result.stderr
        assert waiting.health()[0] == 200 and a.sio.connected
    finally:
        group.replica.signal(signal.SIGCONT)
    wait_until(
        lambda: "offset" in a.call("publish", {"data": "again"}), 10, what="acks once it is back"
    )
    assert waiting.metric("wsk_redis_unreplicated_total") == 1


def test_under_the_roles_acl_a_node_releases_the_session_of_a_client_that_leaves(
    cluster, group, tmp_path
):
    """The nodes' user may run what a release pipelines (SCRIPT EXISTS before EVALSHA)."""
    node = WskNode(tmp_path, "node1", group.url()).start()
    cluster.nodes = [node]
    # a heartbeat comes back through the stream once the node reads it: only then does
    # a connect get a recoverable session
    cluster.node_client(node).wait_for("okok")
    client = cluster.node_client(node)
    assert client.call("join", {"room": "chat"})["room"] == "chat"
    sid = client.sio.get_sid()
    sessions = [
        key
        for key in ask(group.primary.port, "KEYS", "wsk:session:*")
        if ask(group.primary.port, "HGET", key, "sid") == sid.encode()
    ]
    assert len(sessions) == 1
    assert ask(group.primary.port, "HGET", sessions[0], "owner")  # held by the node
    client.sio.disconnect()
    # kept for the recovery window (owner cleared) after a dropped transport, deleted
    # after a DISCONNECT packet: python-socketio's client sends one or the other
    wait_until(
        lambda: ask(group.primary.port, "HGET", sessions[0], "owner") in (b"", None),
        10,
        what="the session released",
    )
    left = ask(group.primary.port, "PTTL", sessions[0])
    assert left == -2 or 0 < left <= 120_000, left  # gone, or kept for the window alone
    assert "no permissions" not in node.log() and "cannot release" not in node.log()
