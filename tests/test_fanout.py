"""Broadcasts written straight to websockets (wsk.fanout): same bytes, same order, no waiting."""

from __future__ import annotations

import base64
import os
import socket
import time
import uuid

import eventlet
import eventlet.queue
from eventlet.greenio import GreenSocket
from eventlet.websocket import RFC6455WebSocket

from processes import LOOPBACK, wait_until
from wsk.fanout import FanoutWebSocket, text_frame


def eventlet_frame(text: str) -> bytes:
    """The frame eventlet's own websocket would write for ``text``, for comparison."""
    ws = RFC6455WebSocket.__new__(RFC6455WebSocket)
    ws.client = False
    ws.extensions = {}
    return ws._pack_message(text)


def test_a_prepared_frame_is_the_frame_eventlet_would_write():
    for length in (0, 1, 124, 125, 126, 65535, 65536, 200_000):
        text = "4" + "é" * (length // 2) + "x" * (length % 2)
        assert bytes(text_frame(text)) == eventlet_frame(text), length


def websocket_pair(sndbuf: int | None = None):
    """A server-side eventlet websocket wrapped for fan-out, and the green socket of its peer."""
    server, peer = socket.socketpair()
    if sndbuf is not None:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    ws = RFC6455WebSocket(GreenSocket(server), {}, 13)
    return FanoutWebSocket(ws), GreenSocket(peer)


def read_exactly(sock: GreenSocket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the connection closed early"
        data += chunk
    return data


def writer(fast: FanoutWebSocket, queue: eventlet.queue.Queue, count: int) -> None:
    """What python-engineio's websocket writer does with the queue, ``count`` times."""
    for _ in range(count):
        fast.send(queue.get().encode())


def test_a_frame_goes_out_at_once_only_when_the_writer_waits_for_nothing():
    fast, peer = websocket_pair()
    queue = eventlet.queue.Queue()
    frame = text_frame("42" + '["message","hi"]')

    # no writer parked on the queue (not started yet, or busy): the frame queues
    assert fast.deliver(queue, frame) is False
    assert queue.qsize() == 1
    queue.get()

    parked = eventlet.spawn(writer, fast, queue, 1)
    eventlet.sleep(0)
    assert queue.getting() == 1
    assert fast.deliver(queue, frame) is True
    assert queue.qsize() == 0
    assert read_exactly(peer, len(frame)) == frame
    parked.kill()


def test_what_a_full_socket_does_not_take_is_finished_by_the_writer_in_order():
    fast, peer = websocket_pair(sndbuf=4096)
    queue = eventlet.queue.Queue()
    big = text_frame("4" + "a" * 2_000_000)
    small = text_frame("4" + "b")
    after = text_frame("4" + "c" * 1000)
    parked = eventlet.spawn(writer, fast, queue, 2)
    eventlet.sleep(0)

    # the kernel takes part of the big frame; a greenlet finishes it, holding the
    # send lock, and the frames after it queue for the writer
    assert fast.deliver(queue, big) is False
    assert fast.deliver(queue, small) is False
    assert fast.deliver(queue, after) is False
    assert queue.qsize() == 2
    reader = eventlet.spawn(read_exactly, peer, len(big) + len(small) + len(after))
    assert reader.wait() == big + small + after
    parked.wait()


def test_a_websocket_with_compression_takes_eventlets_path():
    server, _ = socket.socketpair()
    ws = RFC6455WebSocket(GreenSocket(server), {}, 13, extensions={"permessage-deflate": {}})
    assert FanoutWebSocket(ws).shares_frames is False


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
        started = time.monotonic()
        # about 10 MB for each silent client: far more than its socket buffers hold
        for i in range(160):
            publisher.call("publish", {"data": f"{marker}-{i}-{bulk}"})
        for reader in readers:
            reader.wait_for("message", lambda m: m["data"].startswith(f"{marker}-159-"), 20)
            got = [
                m["data"].split("-")[1] for m in reader.received("message") if marker in m["data"]
            ]
            assert got == [str(i) for i in range(160)]
        assert time.monotonic() - started < 20
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
    # polling clients of python-socketio take no more than a few dozen in a row
    # with the tests' 1 s ping interval (their pongs fall behind, as before wsk.fanout)
    count = 40

    def mine(receiver) -> list[str]:
        return [
            m["data"].split("-")[1] for m in receiver.received("message") if marker in m["data"]
        ]

    for i in range(count):
        # small messages with now and then a large one, which a socket may take only in part
        size = 100_000 if i % 10 == 3 else 10
        publisher.sio.emit("publish", {"data": f"{marker}-{i}-" + "y" * size})
        if i % 10 == 9:
            # in bursts of 10: each publish takes one of the node's Redis connections
            # while it is in flight, and their pool is limited
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
