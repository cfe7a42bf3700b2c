"""Redis goes away and comes back: /healthz/redis follows it, /healthz does not (the node
still serves its own clients, and HAProxy keeps it), relay resumes, no node restarts."""

from __future__ import annotations

import time
import uuid

from processes import wait_until


def test_healthz_redis_turns_503_when_redis_stops_and_healthz_stays_200(cluster):
    cluster.start()
    node = cluster.nodes[0]
    assert node.health()[0] == 200 and node.health()[1]["redis"] == "up"
    assert node.redis_health() == (200, {"status": "ok", "node": "node1", "redis": "up"})

    cluster.redis.stop()
    status, body = wait_until(lambda: _unhealthy(node), 10, what="healthz/redis to turn 503")
    assert status == 503 and body["redis"].startswith("down")
    status, body = node.health()
    assert status == 200 and body["status"] == "ok" and body["redis"].startswith("down")
    assert node.metric("wsk_redis_up") == 0

    cluster.redis.start()
    wait_until(lambda: node.redis_health()[0] == 200, 10, what="healthz/redis to turn 200")
    assert node.metric("wsk_redis_up") == 1
    assert "Redis at redis://127.0.0.1" in node.log() and "is unreachable" in node.log()


def test_a_redis_outage_leaves_every_node_up_in_haproxy_and_serving_its_clients(cluster):
    """Was: /healthz turned 503 with Redis away, and HAProxy took every node out at once."""
    cluster.start()
    haproxy = cluster.haproxy
    names = {node.name for node in cluster.nodes}
    wait_until(lambda: haproxy.server_states() == dict.fromkeys(names, "UP"), 10, what="servers UP")
    before = [cluster.client(t) for t in ("websocket", "polling", "both") for _ in range(2)]
    assert {c.node() for c in before} == names

    cluster.redis.stop()
    wait_until(lambda: all(_unhealthy(n) for n in cluster.nodes), 10, what="nodes to see it")
    # HAProxy checks every 300 ms and takes a server out after 2 failures: ten
    # rounds of checks with Redis away, and no server may leave
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert haproxy.server_states() == dict.fromkeys(names, "UP")
        time.sleep(0.1)

    after = [cluster.client(t) for t in ("websocket", "polling", "both") for _ in range(2)]
    for client in before + after:
        assert client.sio.connected and client.disconnects == []
        answer = client.call("whoami")
        assert answer["node"] in names
    assert {c.node() for c in after} == names
    assert haproxy.server_states() == dict.fromkeys(names, "UP")

    cluster.redis.start()
    wait_until(lambda: all(n.redis_health()[0] == 200 for n in cluster.nodes), 10, what="redis")
    marker = uuid.uuid4().hex

    def relayed() -> bool:
        before[0].call("publish", {"data": marker})
        return all(any(m["data"] == marker for m in c.received("message")) for c in before + after)

    wait_until(relayed, 15, what="a publish to reach every client again")
    assert all(c.disconnects == [] for c in before + after)


def test_relay_resumes_after_a_redis_restart_without_restarting_nodes(cluster):
    cluster.start()
    a = cluster.node_client(cluster.nodes[0])
    b = cluster.node_client(cluster.nodes[1])
    pids = [node.proc.pid for node in cluster.nodes]

    cluster.redis.stop()
    wait_until(lambda: all(_unhealthy(n) for n in cluster.nodes), 10, what="nodes to see it")
    cluster.redis.start()
    wait_until(lambda: all(n.redis_health()[0] == 200 for n in cluster.nodes), 10, what="health")

    def relayed():
        marker = uuid.uuid4().hex
        a.call("publish", {"data": marker})
        try:
            b.wait_for("message", lambda m: m["data"] == marker, timeout=1)
        except AssertionError:
            return False
        return True

    wait_until(relayed, 15, what="a publish on node1 to reach node2")
    assert [node.proc.pid for node in cluster.nodes] == pids
    assert all(node.running for node in cluster.nodes)
    assert a.sio.connected and b.sio.connected


def test_a_node_started_before_redis_waits_for_it_and_then_serves(cluster, tmp_path):
    from processes import RedisServer, WskNode

    redis = RedisServer(tmp_path)
    node = WskNode(tmp_path, "early", redis.url)
    cluster.nodes.append(node)
    cluster.redis = redis
    node.start(wait_healthy=False)

    status, body = node.redis_health()
    assert status == 503 and body["redis"].startswith("down")
    assert node.health()[0] == 200  # it can serve its own clients meanwhile
    wait_until(lambda: "is unreachable" in node.log(), 5, what="the node to log it")

    redis.start()
    wait_until(lambda: node.redis_health()[0] == 200, 10, what="healthz/redis to turn 200")
    client = cluster.node_client(node)
    marker = uuid.uuid4().hex
    client.call("publish", {"data": marker})
    client.wait_for("message", lambda m: m["data"] == marker)


def _unhealthy(node):
    status, body = node.redis_health()
    return (status, body) if status == 503 else None


def test_nodes_reach_a_redis_that_requires_a_password(cluster, tmp_path):
    from processes import RedisServer, WskNode

    redis = RedisServer(tmp_path, password="s3cret/with:odd@chars")
    redis.start()
    cluster.redis = redis
    quoted = "s3cret%2Fwith%3Aodd%40chars"
    url = f"redis://:{quoted}@127.0.0.1:{redis.port}/0"
    nodes = [WskNode(tmp_path, f"auth{i}", url).start() for i in (1, 2)]
    cluster.nodes.extend(nodes)
    a, b = (cluster.node_client(node) for node in nodes)

    a.call("publish", {"data": "through an authenticated Redis"})

    b.wait_for("message", lambda m: m["data"] == "through an authenticated Redis")
    assert "s3cret" not in nodes[0].log()


def test_a_wrong_redis_password_keeps_the_node_unhealthy_and_says_why(cluster, tmp_path):
    from processes import RedisServer, WskNode

    redis = RedisServer(tmp_path, password="right").start()
    cluster.redis = redis
    node = WskNode(tmp_path, "wrongpw", f"redis://:wrong@127.0.0.1:{redis.port}/0")
    cluster.nodes.append(node)
    node.start(wait_healthy=False)

    status, body = node.redis_health()
    assert status == 503
    assert "invalid" in body["redis"].lower() or "auth" in body["redis"].lower()
    assert ":***@127.0.0.1" in node.log() and ":wrong@" not in node.log()


def test_nodes_and_wsk_emit_reach_redis_over_tls(cluster, tmp_path):
    import subprocess

    from processes import BIN, RedisServer, WskNode

    redis = RedisServer(tmp_path, password="tls-secret", tls=True).start()
    cluster.redis = redis
    assert redis.url.startswith("rediss://")
    nodes = [WskNode(tmp_path, f"tls{i}", redis.url).start() for i in (1, 2)]
    cluster.nodes.extend(nodes)
    a, b = (cluster.node_client(node) for node in nodes)

    a.call("publish", {"data": "over TLS"})
    subprocess.run([BIN / "wsk-emit", "--redis-url", redis.url, "news", '"emitted"'], check=True)

    b.wait_for("message", lambda m: m["data"] == "over TLS")
    b.wait_for("news", lambda data: data == "emitted")


def test_a_reader_dropped_by_redis_resumes_where_it_was_and_misses_nothing(cluster):
    """Redis closes the connections the nodes read the stream on; what comes meanwhile waits."""
    import socket as sockets

    cluster.start()
    a = cluster.node_client(cluster.nodes[0])
    b = cluster.node_client(cluster.nodes[1])
    with sockets.create_connection(("127.0.0.1", cluster.redis.port)) as admin:
        admin.sendall(b"CLIENT LIST\r\n")
        listing = b""
        while not listing.endswith(b"\r\n") or listing.count(b"\r\n") < 2:
            listing += admin.recv(65536)
        readers = [
            line.split(" ")[0].removeprefix("id=")
            for line in listing.decode().splitlines()
            if "cmd=xread" in line
        ]
        assert len(readers) == 2, listing  # one reader per node, blocked in XREAD
        for reader in readers:
            admin.sendall(f"CLIENT KILL ID {reader}\r\n".encode())
            assert admin.recv(64).startswith(b":1")

    # published while the readers are away: they must find it when they come back
    markers = [uuid.uuid4().hex for _ in range(5)]
    for marker in markers:
        assert "offset" in a.call("publish", {"data": marker})

    got = wait_until(
        lambda: (
            (m := [x["data"] for x in b.received("message") if x["data"] in markers]) == markers
            and m
        ),
        10,
        what="every message, in order, after the readers came back",
    )
    assert got == markers
    for node in cluster.nodes:
        wait_until(lambda n=node: "Reading the stream at redis://127.0.0.1" in n.log(), 10)
