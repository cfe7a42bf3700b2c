"""Long-polling clients make many requests per session: the sticky cookie keeps them on one node."""

from __future__ import annotations

import time

import pytest
import socketio

from clients import RecordingClient

POLL_CYCLES = 6  # the nodes ping every second, which ends each long poll


def test_polling_clients_stay_on_their_node_through_many_poll_cycles(cluster):
    cluster.start(sticky=True)
    clients = [cluster.client("polling") for _ in range(6)]
    first_nodes = [client.node() for client in clients]
    assert set(first_nodes) == {"node1", "node2"}
    assert all(c.sio.transport() == "polling" for c in clients)

    for _ in range(POLL_CYCLES):
        time.sleep(1)
        assert [client.node() for client in clients] == first_nodes

    assert all(client.disconnects == [] and client.connects == 1 for client in clients)
    assert all(client.sio.connected for client in clients)


def test_polling_clients_lose_their_session_without_the_sticky_cookie(cluster):
    """The control: the same clients behind the same proxy, minus the cookie."""
    cluster.start(sticky=False)
    failures = 0
    for _ in range(3):
        client = RecordingClient(reconnection=False)
        cluster.clients.append(client)
        try:
            client.connect(cluster.haproxy.url, transport="polling", wait_timeout=2)
            for _ in range(POLL_CYCLES):
                client.node()
                time.sleep(1)
        except (socketio.exceptions.ConnectionError, socketio.exceptions.TimeoutError):
            failures += 1
            continue
        failures += bool(client.disconnects) or not client.sio.connected
    assert failures == 3


@pytest.mark.parametrize("transport", ["websocket", "both"])
def test_websocket_and_upgrading_clients_land_on_both_nodes_and_stay(cluster, transport):
    cluster.start(sticky=True)
    clients = [cluster.client(transport) for _ in range(4)]
    nodes = [client.node() for client in clients]
    assert set(nodes) == {"node1", "node2"}
    time.sleep(2)
    assert [client.node() for client in clients] == nodes
    assert all(client.sio.transport() == "websocket" for client in clients)
    assert all(client.disconnects == [] for client in clients)
