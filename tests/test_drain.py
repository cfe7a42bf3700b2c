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
