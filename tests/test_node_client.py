"""Node's socket.io-client, a second implementation, against the cluster."""

from __future__ import annotations

import json
import shutil
import signal
import uuid

import pytest

from clients import NODE_DIR, NodeClient
from processes import wait_until

pytestmark = pytest.mark.skipif(
    not (NODE_DIR / "node_modules" / "socket.io-client").is_dir() or not shutil.which("node"),
    reason="socket.io-client is not installed: 'make test' installs it",
)


@pytest.fixture
def node_clients():
    clients: list[NodeClient] = []
    yield clients
    for client in clients:
        client.stop()


@pytest.mark.parametrize("transports", ["websocket", "polling", "polling,websocket"])
def test_node_clients_move_to_the_other_node_on_sigterm(cluster, node_clients, transports):
    cluster.start()
    for _ in range(4):
        node_clients.append(NodeClient(cluster.haproxy.url, transports))
    wait_until(lambda: all(c.nodes() for c in node_clients), 15, what="whoami answers")
    leaving = cluster.nodes[0]
    movers = [c for c in node_clients if c.nodes()[0] == leaving.name]
    assert 0 < len(movers) < len(node_clients)

    leaving.signal(signal.SIGTERM)
    assert leaving.proc.wait(timeout=15) == 0

    for client in movers:
        wait_until(lambda c=client: c.nodes()[1:] == ["node2"], 10, what="a reconnect to node2")
        reasons = [line["data"] for line in client.lines if line["what"] == "disconnect"]
        assert reasons and reasons[0] != "io server disconnect"


def test_python_and_node_clients_on_different_nodes_exchange_messages(cluster, node_clients):
    cluster.start()
    js = NodeClient(cluster.haproxy.url, "websocket")
    node_clients.append(js)
    wait_until(js.nodes, 15, what="the Node client to connect")
    other = next(n for n in cluster.nodes if n.name != js.nodes()[0])
    py = cluster.node_client(other)
    marker = uuid.uuid4().hex

    py.call("publish", {"data": marker})
    js.send("publish", {"data": "from node " + marker})

    wait_until(lambda: any(m["data"] == marker for m in js.events("message")), 10, what="relay")
    py.wait_for("message", lambda m: m["data"] == "from node " + marker)
    wait_until(
        lambda: {b["node"] for b in js.events("okok")} == {"node1", "node2"},
        10,
        what="heartbeats of both nodes",
    )


def test_a_node_polling_client_sends_a_burst_in_one_post_and_loses_none(cluster, node_clients):
    # socket.io-client sends all it has buffered in one long-polling POST;
    # python-engineio refuses more than 16 packets in a payload by default
    cluster.start()
    js = NodeClient(cluster.haproxy.url, "polling")
    node_clients.append(js)
    wait_until(js.nodes, 15, what="the Node client to connect")
    marker = uuid.uuid4().hex
    count = 60
    js.proc.stdin.write(
        "".join(
            json.dumps({"event": "publish", "data": {"data": f"{marker}-{i}"}}) + "\n"
            for i in range(count)
        )
    )
    js.proc.stdin.flush()

    def mine() -> list[str]:
        return [m["data"] for m in js.events("message") if marker in str(m["data"])]

    wait_until(lambda: len(mine()) == count, 15, what="every message back")
    assert mine() == [f"{marker}-{i}" for i in range(count)]
    assert not [line for line in js.lines if line["what"] == "disconnect"]
