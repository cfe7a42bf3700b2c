"""Broadcasts written straight to websockets (wsk.transport): whole, in order, no one waits."""

from __future__ import annotations

import base64
import os
import socket
import uuid

from processes import LOOPBACK, wait_until


class SilentWebSocketClient:
    """A websocket Socket.IO client straight to a node that connects, then never reads."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        # small buffers, so that a few broadcasts fill them
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((LOOPBACK, port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /?EIO=4&transport=websocket HTTP/1.1\r\n"
                f"Host: {LOOPBACK}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.sock.settimeout(5)
        seen = b""
        while b"0{" not in seen:  # the handshake's answer, then Engine.IO's OPEN packet
            seen += self.sock.recv(4096)
        self.send_text("40")
        while b"40{" not in seen:  # Socket.IO's CONNECT answer
            seen += self.sock.recv(4096)
        # from now on it reads nothing

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)

    def close(self) -> None:
        self.sock.close()


def test_a_client_that_does_not_read_delays_no_one(cluster):
    cluster.start()
    node1 = cluster.nodes[0]
    silent = [SilentWebSocketClient(node1.port) for _ in range(3)]
    try:
        readers = [cluster.node_client(node1) for _ in range(2)]
        publisher = cluster.node_client(node1)
        bulk = "x" * 64_000
        marker = uuid.uuid4().hex
        # about 10 MB for each silent client: far more than its socket buffers hold
        for i in range(160):
            publisher.call("publish", {"data": f"{marker}-{i}-{bulk}"})
        for reader in readers:
            reader.wait_for("message", lambda m: m["data"].startswith(f"{marker}-159-"), 20)
            got = [
                m["data"].split("-")[1] for m in reader.received("message") if marker in m["data"]
            ]
            assert got == [str(i) for i in range(160)]
        assert publisher.call("whoami")["node"] == "node1"
    finally:
        for client in silent:
            client.close()


def test_a_burst_of_broadcasts_arrives_whole_and_in_one_order_on_every_transport(cluster):
    cluster.start()
    receivers = [
        cluster.node_client(node, transport)
        for node in cluster.nodes
        for transport in ("websocket", "polling", "both")
    ]
    publisher = cluster.node_client(cluster.nodes[0])
    marker = uuid.uuid4().hex
    # more than python-engineio's client takes in one long-polling response (16)
    count = 150

    def mine(receiver) -> list[str]:
        return [
            m["data"].split("-")[1] for m in receiver.received("message") if marker in m["data"]
        ]

    for i in range(count):
        # small messages with now and then a large one, which a socket may take only in part
        size = 100_000 if i % 10 == 3 else 10
        publisher.sio.emit("publish", {"data": f"{marker}-{i}-" + "y" * size})
        if i % 25 == 24:
            # in bursts of 25: each publish takes one of the node's Redis connections
            # while it is in flight, and their pool (32) is limited
            publisher.call("whoami")
    orders: dict[str, list[list[str]]] = {}
    for receiver, node in zip(
        receivers, [n.name for n in cluster.nodes for _ in range(3)], strict=True
    ):
        wait_until(lambda r=receiver: len(mine(r)) >= count, 30, what="every message")
        got = mine(receiver)
        assert len(got) == count == len(set(got))
        orders.setdefault(node, []).append(got)
    # a node delivers in one order to all its clients (the publisher's node as it
    # handles the publishes, the other in the order Redis relays them): a client
    # that saw another order had its messages reordered on the way
    for node, seen in orders.items():
        assert all(order == seen[0] for order in seen), (node, seen)
