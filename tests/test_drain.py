"""SIGTERM drains a node: its clients reconnect to another node on their own; it exits 0."""

from __future__ import annotations

import signal
import time

import pytest

from processes import wait_until


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_sigterm_moves_clients_to_the_other_node_and_exits_zero(cluster, transport):
    cluster.start()
    clients = [cluster.client(transport) for _ in range(6)]
    leaving = cluster.nodes[0]
    movers = [c for c in clients if c.node() == leaving.name]
    assert movers and len(movers) < len(clients)

    started = time.monotonic()
    leaving.signal(signal.SIGTERM)
    code = leaving.proc.wait(timeout=15)

    assert code == 0
    for client in movers:
        wait_until(lambda c=client: c.connects == 2 and c.sio.connected, 10, what="reconnect")
        assert client.node() == "node2"
    assert time.monotonic() - started < 10
    for client in clients:
        assert client.sio.connected
    assert "draining: closing" in leaving.log()


def test_a_request_that_never_finishes_cannot_hold_the_drain_past_its_timeout(cluster):
    import json
    import socket as sockets

    import requests

    cluster.start(nodes=1, drain_timeout=2)
    node = cluster.nodes[0]
    handshake = requests.get(node.url + "/?EIO=4&transport=polling", timeout=5)
    sid = json.loads(handshake.text[1:])["sid"]
    stalled = sockets.create_connection(("127.0.0.1", node.port))
    # a POST that announces 100 bytes and sends 2: the node waits for the rest
    stalled.sendall(
        f"POST /?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n40".encode()
    )
    time.sleep(0.3)
    try:
        started = time.monotonic()
        node.signal(signal.SIGTERM)
        code = node.proc.wait(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        stalled.close()
    assert code == 0
    assert 1.5 < elapsed < 6
