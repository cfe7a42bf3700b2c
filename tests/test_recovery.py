"""Connection-state recovery: every acknowledged publish reaches every client once, in order.

Node's socket.io-client 4.8 (websocket, long-polling, polling then upgrade) in one
room of a two-node cluster behind the tests' HAProxy, on a Redis with an
append-only file, while a publisher sends numbered messages into the room, each
acknowledged before the next. Then a routine fault. Afterwards every client is
connected, has every acknowledged message exactly once and in order, and the
clients of a node that went away came back with their session (``recovered``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid

import pytest

from clients import NodeClient, RecordingClient
from processes import BIN, wait_until

TRANSPORTS = ["websocket", "polling", "polling,websocket"]


class Publisher:
    """Publishes {seq} into a room through HAProxy, one at a time, each acknowledged first."""

    def __init__(self, url: str, room: str) -> None:
        self.client = RecordingClient().connect(url)
        self.room = room
        self.acked: list[int] = []
        self.refused: list[int] = []
        self.seq = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            seq, self.seq = self.seq, self.seq + 1
            try:
                ack = self.client.call("publish", {"room": self.room, "data": {"seq": seq}}, 2)
            except Exception:  # disconnected or no answer: not acknowledged
                ack = None
            (self.acked if ack and "offset" in ack else self.refused).append(seq)
            time.sleep(0.02)

    def stop(self) -> None:
        self.running = False
        self.thread.join()
        self.client.close()


def seqs(client: NodeClient, room: str) -> list[int]:
    return [m["data"]["seq"] for m in client.events("message") if m.get("room") == room]


@pytest.fixture
def population(cluster, request):
    """The cluster, six Node clients in one room, and the publisher; all stopped after."""
    cluster.start(redis_aof=True, **getattr(request, "param", {}))
    room = "live-" + uuid.uuid4().hex[:6]
    clients = [NodeClient(cluster.haproxy.url, t, 120, room) for t in TRANSPORTS for _ in (1, 2)]
    wait_until(lambda: all(c.connected() and c.nodes() for c in clients), 20, what="clients")
    wait_until(
        lambda: all(any(a["data"]["event"] == "join" for a in _acks(c)) for c in clients),
        10,
        what="every client to join",
    )
    publisher = Publisher(cluster.haproxy.url, room)
    yield cluster, clients, publisher, room
    publisher.stop()
    for client in clients:
        client.stop()


def _acks(client: NodeClient) -> list[dict]:
    return [line for line in list(client.lines) if line["what"] == "ack"]


def settle_and_check(cluster, clients, publisher, room, lost: set[str]) -> None:
    """Go on a while after the fault, then check every client's messages."""
    wait_until(lambda: all(c.connected() for c in clients), 30, what="every client back")
    target = publisher.seq + 40
    wait_until(lambda: publisher.seq >= target, 30, what="more publishes after the fault")
    publisher.stop()
    acked = set(publisher.acked)
    last = max(acked)
    for client in clients:
        wait_until(lambda c=client: last in seqs(c, room), 20, what=f"the last message ({last})")
    for client in clients:
        got = seqs(client, room)
        assert len(got) == len(set(got)), f"{client.transports}: duplicates"
        assert got == sorted(got), f"{client.transports}: out of order"
        missing = sorted(acked - set(got))
        assert not missing, f"{client.transports} missed acknowledged {missing[:10]}"
        assert client.connected()
        first_node = client.nodes()[0]
        if first_node in lost:
            reconnects = client.connects()[1:]
            assert reconnects and all(c["recovered"] for c in reconnects), client.connects()
    assert publisher.acked, "nothing was acknowledged"


def on_node(clients, name: str) -> list[NodeClient]:
    return [c for c in clients if c.nodes() and c.nodes()[0] == name]


def kill(node) -> None:
    node.signal(signal.SIGKILL)
    node.proc.wait()


@pytest.mark.parametrize("fault", ["kill-9-and-restart", "sigterm-drain", "node-never-back"])
def test_a_node_that_goes_away_loses_no_acknowledged_message(population, fault):
    cluster, clients, publisher, room = population
    node = cluster.nodes[1]
    assert on_node(clients, node.name) and on_node(clients, cluster.nodes[0].name)
    time.sleep(1)
    if fault == "sigterm-drain":
        node.terminate()
        assert node.proc.wait(30) == 0
    else:
        kill(node)
    if fault != "node-never-back":
        time.sleep(1)
        node.start()
    settle_and_check(cluster, clients, publisher, room, lost={node.name})


def test_a_clean_redis_restart_loses_no_acknowledged_message(population):
    cluster, clients, publisher, room = population
    time.sleep(1)
    cluster.redis.stop()  # SIGTERM: Redis writes its append-only file out and exits
    time.sleep(1)
    cluster.redis.start()
    settle_and_check(cluster, clients, publisher, room, lost=set())
    # the publishes while Redis was away were refused, never acknowledged as sent
    assert publisher.refused


def test_a_client_that_had_received_nothing_recovers(cluster):
    """socket.io#5538, #4888: with no offset yet, socket.io-client sends only its pid."""
    cluster.start()
    room = "quiet-" + uuid.uuid4().hex[:6]
    client = NodeClient(cluster.haproxy.url, "websocket", 60, room)
    try:
        wait_until(lambda: _acks(client), 10, what="the join")
        sender = RecordingClient().connect(cluster.haproxy.url)
        client.break_transport(reconnect_after=1.0)
        wait_until(lambda: not client.connected(), 5, what="the break")
        for seq in range(5):  # while it is away
            sender.call("publish", {"room": room, "data": {"seq": seq}})
        wait_until(lambda: len(client.connects()) == 2, 10, what="the reconnect")
        assert client.connects()[1]["recovered"] is True
        assert client.connects()[1]["id"] == client.connects()[0]["id"]
        wait_until(lambda: seqs(client, room) == list(range(5)), 5, what="the missed messages")
        sender.close()

        def counted(name: str, **labels: str) -> float:
            return sum(node.metric(name, 0, **labels) for node in cluster.nodes)

        assert counted("wsk_recoveries_attempted_total") == 1
        assert counted("wsk_recoveries_total", result="succeeded", reason="") == 1
        assert counted("wsk_recovery_replayed_total") >= 5  # and the heartbeats it missed
        wait_until(lambda: counted("wsk_stream_length") >= 5, 10, what="the stream's length")
    finally:
        client.stop()


def test_a_client_back_while_redis_is_away_recovers_once_redis_returns(cluster):
    """Its session cannot be looked up: it is sent away to retry, not given a new one."""
    cluster.start(redis_aof=True)
    node = cluster.nodes[0]
    room = "outage-" + uuid.uuid4().hex[:6]
    client = NodeClient(node.url, "websocket", 60, room, path="/")  # to the node, no HAProxy
    sender = RecordingClient().connect(cluster.haproxy.url)
    try:
        wait_until(lambda: _acks(client), 10, what="the join")
        sender.call("publish", {"room": room, "data": {"seq": 0}})
        wait_until(lambda: seqs(client, room) == [0], 5, what="a live message")
        cluster.redis.stop()
        client.break_transport(reconnect_after=0.3)
        wait_until(lambda: "cannot be looked up now" in node.log(), 10, what="a retry")
        cluster.redis.start()
        wait_until(lambda: client.connected() and len(client.connects()) >= 2, 20, what="back")
        assert [c["recovered"] for c in client.connects()] == [False, True]
        wait_until(
            lambda: "offset" in sender.call("publish", {"room": room, "data": {"seq": 1}}), 10
        )
        wait_until(lambda: seqs(client, room) == [0, 1], 5, what="the next message, once")
    finally:
        sender.close()
        client.stop()


def test_a_client_recovers_again_and_again(cluster):
    """socket.io#4880: the second recovery in a row must be as exact as the first."""
    cluster.start()
    room = "again-" + uuid.uuid4().hex[:6]
    client = NodeClient(cluster.haproxy.url, "polling,websocket", 60, room)
    sender = RecordingClient().connect(cluster.haproxy.url)
    try:
        wait_until(lambda: _acks(client), 10, what="the join")
        seq = 0
        for round_ in range(1, 4):
            sender.call("publish", {"room": room, "data": {"seq": seq}})
            seq += 1
            wait_until(lambda s=seq: len(seqs(client, room)) == s, 5, what="a live message")
            client.break_transport(reconnect_after=0.8)
            wait_until(lambda: not client.connected(), 5, what="the break")
            for _ in range(3):
                sender.call("publish", {"room": room, "data": {"seq": seq}})
                seq += 1
            wait_until(lambda r=round_: len(client.connects()) == r + 1, 10, what="the reconnect")
            assert client.connects()[-1]["recovered"] is True
        wait_until(lambda: seqs(client, room) == list(range(seq)), 5, what="all of them once")
    finally:
        sender.close()
        client.stop()


@pytest.mark.parametrize("population", [{"recovery_window": 3}], indirect=True)
def test_a_connection_older_than_the_window_still_recovers(population):
    """socket.io#5282, redis-streams-adapter#48: the session lives as long as its connection."""
    cluster, clients, publisher, room = population
    time.sleep(5)  # the connections are now older than the 3 s window
    kill(cluster.nodes[1])
    time.sleep(0.5)
    cluster.nodes[1].start()
    settle_and_check(cluster, clients, publisher, room, lost={cluster.nodes[1].name})


def test_a_client_away_longer_than_the_window_gets_a_new_session(cluster):
    cluster.start(recovery_window=1)
    client = NodeClient(cluster.haproxy.url, "websocket", 60, "late")
    try:
        wait_until(lambda: client.connected(), 10, what="the client")
        client.break_transport(reconnect_after=2.5)
        wait_until(lambda: len(client.connects()) == 2, 10, what="the reconnect")
        assert client.connects()[1]["recovered"] is False
        assert client.connects()[1]["id"] != client.connects()[0]["id"]
        node_logs = "".join(node.log() for node in cluster.nodes)
        assert "could not recover its session (unknown_session" in node_logs
    finally:
        client.stop()


def test_wsk_client_recovers_and_says_so(cluster):
    cluster.start()
    proc = subprocess.Popen(
        [BIN / "wsk-client", cluster.haproxy.url, "--duration", "20", "--send-interval", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        wait_until(lambda: any(" whoami " in line for line in lines), 10, what="its whoami")
        node = next(n for n in cluster.nodes if f'"node":"{n.name}"' in "".join(lines))
        node.terminate()  # a drain: the client must come back elsewhere, with its session
        wait_until(lambda: any(" recovered " in line for line in lines), 15, what="recovered")
    finally:
        proc.terminate()
        proc.wait()
    sids = [line.split()[2] for line in lines if " connected " in line or " recovered " in line]
    assert len(set(sids)) == 1, lines


def test_wsk_client_waits_as_long_on_a_reconnect_as_on_its_first_connect(cluster):
    """python-socketio's reconnect waits 1 s for the CONNECT answer, whatever connect() was
    given. A recovering CONNECT that waits on Redis took longer, so the attempt was given
    up and made again; over long-polling the late answer still fired "connect" (seen in
    the Molecule rolling restart: two connects for one lost connection)."""
    cluster.start(nodes=1)
    node = cluster.nodes[0]
    client = RecordingClient().connect(cluster.haproxy.url, transport="polling", wait_timeout=10)
    cluster.clients.append(client)
    client.wait_for("okok")  # the node reads the stream: the session can be recovered
    cluster.redis.signal(signal.SIGSTOP)  # Redis stalls: the next CONNECT waits on it
    try:
        cluster.haproxy.stop()  # the long-poll breaks; the client retries until HAProxy is back
        cluster.haproxy.start()
        wait_until(
            lambda: node.metric("wsk_recoveries_attempted_total", 0) >= 1, 10, what="the attempt"
        )
        time.sleep(2)  # the CONNECT has waited on Redis for longer than 1 s
    finally:
        cluster.redis.signal(signal.SIGCONT)
    wait_until(lambda: client.connects == 2 and client.sio.connected, 10, what="the reconnect")
    time.sleep(1)  # a second attempt would come within the client's 1 s reconnect delay
    # without wait_timeout kept for reconnects: 3 connects, 1 disconnect, 2 attempts
    assert client.connects == 2 and client.sio.recovered
    assert len(client.disconnects) == 1
    assert node.metric("wsk_recoveries_attempted_total", 0) == 1  # one attempt, answered
    assert node.metric("wsk_recoveries_total", 0, result="succeeded", reason="") == 1


def _raw_client(node):
    """An Engine.IO websocket straight to a node, past its open packet."""
    import websocket

    ws = websocket.create_connection(
        f"ws://{node.url.removeprefix('http://')}/?EIO=4&transport=websocket", timeout=10
    )
    assert ws.recv().startswith("0")
    return ws


def _connect(node, auth=None) -> dict:
    ws = _raw_client(node)
    ws.send("40" + (json.dumps(auth) if auth else ""))
    answer = ws.recv()
    ws.close()
    assert answer.startswith("40{"), answer
    return json.loads(answer[2:])


@pytest.mark.parametrize("returning", [True, False], ids=["recovering", "new"])
def test_a_client_that_leaves_while_its_connect_waits_on_redis_is_no_protocol_error(
    cluster, returning
):
    """Was: the CONNECT went on for a session that had ended, and failed on it
    (KeyError: 'Session not found', counted as a malformed packet); a claimed
    session was left owned by the connection that had gone."""
    cluster.start(nodes=1)
    node = cluster.nodes[0]
    first = _connect(node)
    auth = {"pid": first["pid"], "offset": None} if returning else None
    leaving = _raw_client(node)
    cluster.redis.signal(signal.SIGSTOP)  # Redis stalls: the CONNECT waits on it
    try:
        leaving.send("40" + (json.dumps(auth) if auth else ""))
        time.sleep(0.5)
        leaving.close()
        wait_until(lambda: node.health()[1]["clients"] == 0, 10, what="the client to be gone")
    finally:
        cluster.redis.signal(signal.SIGCONT)
    # the node gets on with it once Redis answers, and says nothing of a malformed packet
    again = _connect(node, {"pid": first["pid"], "offset": None})
    assert again["sid"] == first["sid"]  # the session waited for its client, as before
    assert node.metric("wsk_protocol_errors_total", 0, kind="packet") == 0
    assert "malformed" not in node.log()
    assert node.metric("wsk_connected_clients", 0) == 0
