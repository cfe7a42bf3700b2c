"""One node holds far more than eventlet's default 1,024 connections."""

from __future__ import annotations

import asyncio
import resource

import requests

from processes import LOOPBACK, WskNode, wait_until

CONNECTIONS = 10_000
HANDSHAKE = (
    "GET /?EIO=4&transport=websocket HTTP/1.1\r\n"
    "Host: {host}\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n"
)


async def open_websocket(port: int) -> asyncio.StreamWriter:
    """Open an Engine.IO websocket session; return it once it got its open packet."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(HANDSHAKE.format(host=f"{LOOPBACK}:{port}").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    frame = await reader.readexactly(2)
    length = frame[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    body = await reader.readexactly(length)
    assert body.startswith(b"0{"), body
    return writer


async def open_websockets(port: int, count: int, concurrency: int = 200):
    """Open ``count`` Engine.IO websocket sessions, ``concurrency`` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one():
        async with gate:
            return await open_websocket(port)

    return await asyncio.gather(*(one() for _ in range(count)))


def test_one_node_holds_ten_thousand_websocket_connections(cluster):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # pings every 60 s, so the idle sessions need no answers from this raw client
    cluster.start(nodes=1, ping_interval=60, ping_timeout=60)
    node = cluster.nodes[0]

    async def scenario():
        writers = await open_websockets(node.port, CONNECTIONS)
        health = await asyncio.to_thread(requests.get, node.url + "/healthz", timeout=10)
        for writer in writers:
            writer.close()
        return health

    try:
        health = asyncio.run(scenario())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    assert health.status_code == 200
    assert health.json()["clients"] >= CONNECTIONS


def test_a_node_out_of_descriptors_waits_for_some_and_then_accepts_again(cluster):
    cluster.start(nodes=1, ping_interval=60, ping_timeout=60)
    node = WskNode(cluster.workdir, "tight", cluster.redis.url, ping_interval=60, ping_timeout=60)
    node.open_files = 100  # far below what --max-connections wants
    cluster.nodes.append(node.start())
    wanted = 150

    async def scenario():
        tasks = [asyncio.create_task(open_websocket(node.port)) for _ in range(wanted)]
        await asyncio.sleep(3)
        served = [task for task in tasks if task.done()]
        # the node took what its descriptors allow; the rest wait in the listen backlog
        assert 0 < len(served) < wanted
        for task in served:
            task.result().close()
        # the descriptors come back, and the node accepts the waiting ones
        writers = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        for writer in writers:
            writer.close()
        return len(served)

    first = asyncio.run(scenario())
    assert first > 50
    assert "cannot accept connections" in node.log()
    assert "raise LimitNOFILE" in node.log()
    wait_until(lambda: node.health()[0] == 200, 10, what="the node to answer again")
