"""Every Socket.IO client out there connects: the compatibility matrix, through HAProxy.

socket.io-client 2.5 (Engine.IO 3 / Socket.IO 2, served with --allow-eio3), 3.1,
4.0 and 4.8 (with and without withCredentials), and python-socketio's client,
each over websocket, long-polling and polling then upgrade, onto a two-node
cluster behind the tests' HAProxy. Each must get heartbeats from both nodes, a
message published on each node, and keep its session: socket.io-client in Node
keeps no cookies (unless withCredentials in 4.7+), so its long-polling requests
find their node by the prefix of their sid alone.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
import uuid

import pytest
import requests
import socketio

from clients import NODE_DIR
from processes import wait_until

SECONDS = 14
TRANSPORTS = {"websocket": "websocket", "polling": "polling", "upgrade": "polling,websocket"}
# (label, npm module, withCredentials)
NODE_CLIENTS = [
    ("2.5.0", "socket.io-client-2", "no"),
    ("3.1.3", "socket.io-client-3", "no"),
    ("4.0.2", "socket.io-client-40", "no"),
    ("4.8", "socket.io-client", "yes"),
    ("4.8-no-credentials", "socket.io-client", "no"),
]
CELLS = [
    (client, transport)
    for client in [*NODE_CLIENTS, ("python-socketio", None, None)]
    for transport in TRANSPORTS
]

pytestmark = pytest.mark.skipif(
    not (NODE_DIR / "node_modules" / "socket.io-client-2").is_dir() or not shutil.which("node"),
    reason="the socket.io-client versions are not installed: 'make test' installs them",
)


class NodeCell:
    """One socket.io-client (Node) of the matrix, reporting JSON lines."""

    def __init__(self, module: str, credentials: str, url: str, transports: str, room: str):
        argv = ["node", str(NODE_DIR / "matrix.js"), module, url, "/wsk", transports]
        self.proc = subprocess.Popen(
            [*argv, credentials, room, str(SECONDS)], stdout=subprocess.PIPE, text=True
        )
        self.lines: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def seen(self, what: str) -> list:
        return [line["data"] for line in list(self.lines) if line["what"] == what]

    def final_transport(self) -> str | None:
        self.proc.wait(SECONDS + 10)
        found = self.seen("transport")
        return found[0] if found else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


class PythonCell:
    """python-socketio's own client, its handlers taking whatever arguments come."""

    def __init__(self, url: str, transports: str, room: str) -> None:
        self.lines: list[dict] = []
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("okok", lambda beat, *_: self.lines.append({"what": "okok", "data": beat}))
        self.sio.on("message", lambda m, *_: self.lines.append({"what": "message", "data": m}))
        self.sio.on("disconnect", lambda *a: self.lines.append({"what": "disconnect", "data": a}))
        self.sio.connect(
            url, socketio_path="/wsk", transports=transports.split(","), wait_timeout=10
        )
        self.lines.append({"what": "connect", "data": {"id": self.sio.get_sid()}})
        self.lines.append({"what": "whoami", "data": self.sio.call("whoami", timeout=10)})
        joined = self.sio.call("join", {"room": room}, timeout=10)
        self.lines.append({"what": "join", "data": joined})

    def seen(self, what: str) -> list:
        return [line["data"] for line in list(self.lines) if line["what"] == what]

    def final_transport(self) -> str:
        return self.sio.transport()

    def stop(self) -> None:
        self.sio.disconnect()


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """A two-node cluster with --allow-eio3, every cell connected to it, and two publishes."""
    from conftest import Cluster

    cluster = Cluster(tmp_path_factory.mktemp("compat")).start(allow_eio3="yes")
    room = "compat-" + uuid.uuid4().hex[:6]
    url = cluster.haproxy.url
    cells = {}
    for (label, module, credentials), transport in CELLS:
        if module is None:
            cells[(label, transport)] = PythonCell(url, TRANSPORTS[transport], room)
        else:
            cells[(label, transport)] = NodeCell(
                module, credentials, url, TRANSPORTS[transport], room
            )
    with contextlib.suppress(AssertionError):  # a cell that did not join fails on its own
        wait_until(lambda: all(c.seen("join") for c in cells.values()), 15, what="every join")
    time.sleep(1)  # some poll cycles first: a cookieless poll must still find its node
    senders = [cluster.node_client(node) for node in cluster.nodes]
    markers = {}
    for node, sender in zip(cluster.nodes, senders, strict=True):
        markers[node.name] = f"from-{node.name}-{uuid.uuid4().hex[:6]}"
        sender.call("publish", {"room": room, "data": markers[node.name]})
    yield cluster, cells, markers
    for cell in cells.values():
        cell.stop()
    cluster.stop()


@pytest.mark.parametrize(
    ("client", "transport"),
    [(c[0], t) for c, t in CELLS],
    ids=[f"{c[0]}-{t}" for c, t in CELLS],
)
def test_every_client_connects_over_every_transport(matrix, client, transport):
    cluster, cells, markers = matrix
    cell = cells[(client, transport)]
    nodes = {node.name for node in cluster.nodes}

    def got_everything() -> bool:
        beating = {beat["node"] for beat in cell.seen("okok")}
        messages = {m["data"] for m in cell.seen("message")}
        return beating >= nodes and messages >= set(markers.values())

    assert cell.seen("join"), f"it did not join: {cell.lines[:5]}"
    wait_until(got_everything, SECONDS, what="heartbeats from both nodes and both messages")
    assert cell.seen("whoami")[0]["node"] in nodes
    assert cell.seen("join")[0]["room"].startswith("compat-")
    assert cell.seen("disconnect") == [], "the session did not last"
    expected = "polling" if transport == "polling" else "websocket"
    assert cell.final_transport() == expected


def test_a_sid_with_an_unknown_prefix_gets_a_400(matrix):
    cluster, _, _ = matrix
    for sid in ("nosuchnode~" + "a" * 22, "node1~doesnotexist", "~", "node1~"):
        response = requests.get(
            cluster.haproxy.url + "/wsk/",
            params={"EIO": "4", "transport": "polling", "sid": sid},
            timeout=5,
        )
        assert response.status_code == 400, sid
    for node in cluster.nodes:
        assert node.health()[0] == 200


def test_session_ids_name_their_node_and_keep_128_random_bits(matrix):
    cluster, _, _ = matrix
    node = cluster.nodes[1]
    answer = requests.get(
        node.url + "/", params={"EIO": "4", "transport": "polling"}, timeout=5
    ).text
    sid = json.loads(answer[1:])["sid"]
    prefix, _, token = sid.partition("~")
    assert prefix == node.name
    assert len(token) >= 22  # 16 random bytes, URL-safe base64
