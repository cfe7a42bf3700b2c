"""Hostile clients against one node, each while a well-behaved client on it notices nothing.

Every attack here broke a promise of the README before wsk.transport bounded it
(issue 8): the node froze, grew without bound, logged a traceback or believed a
client. Each test fails without the fix it names. The bystander calls whoami
every 0.1 s and must have every call answered, never be disconnected, and keep
receiving heartbeats.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
import websocket
from websocket import ABNF

from clients import RecordingClient
from processes import LOOPBACK, wait_until

MAX_PAYLOAD = 1_000_000
LIMITS = {
    "max_connections": 60,
    "request_timeout": 2,
    "max_payload": MAX_PAYLOAD,
    "client_queue_bytes": 2_000_000,
    "client_event_rate": 50,
    "client_event_burst": 100,
    "client_max_rooms": 5,
}


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node (and its Redis), spoken to directly, with small limits."""
    from conftest import Cluster

    cluster = Cluster(tmp_path_factory.mktemp("attacks")).start(nodes=1, **LIMITS)
    yield cluster.nodes[0]
    cluster.stop()


class Bystander:
    """A well-behaved client: calls whoami every 0.1 s and counts heartbeats."""

    def __init__(self, node) -> None:
        self.client = RecordingClient().connect(node.url, path="/", transport="websocket")
        self.failures: list[str] = []
        self.calls = 0
        self.running = True
        self.thread = threading.Thread(target=self._call, daemon=True)

    def _call(self) -> None:
        while self.running:
            try:
                self.client.call("whoami", timeout=5)
                self.calls += 1
            except Exception as exc:  # a call that is not answered in 5 s
                self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.1)

    def __enter__(self) -> Bystander:
        self.beats_before = len(self.client.received("okok"))
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        # the attack is over; the bystander must still be served, and have been all along
        self.client.wait_for("okok", timeout=5)
        self.running = False
        self.thread.join()
        disconnects = list(self.client.disconnects)
        self.client.close()
        if exc[0] is None:
            assert self.failures == [], f"the bystander's calls failed: {self.failures[:3]}"
            assert disconnects == [], "the bystander was disconnected"
            assert self.calls > 0
            assert len(self.client.received("okok")) > self.beats_before


def ws_connect(node, path: str = "/?EIO=4&transport=websocket") -> websocket.WebSocket:
    """A websocket Engine.IO session connected to the main namespace."""
    ws = websocket.create_connection(f"ws://{LOOPBACK}:{node.port}{path}", timeout=10)
    assert ws.recv().startswith("0{")
    ws.send("40")
    while not (message := ws.recv()).startswith("40"):
        assert message == "2" or message.startswith("42"), message
    return ws


def client_frame(opcode: int, payload: bytes, fin: int = 1) -> bytes:
    return ABNF(fin, 0, 0, 0, opcode, 1, payload).format()


def closed_by_node(ws: websocket.WebSocket, timeout: float = 10) -> int | None:
    """Read until the node closes; the close code it sent, or 0 for a plain close."""
    ws.settimeout(timeout)
    while True:
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return 0
        if opcode == ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big") if len(data) >= 2 else 0


def polling_session(node) -> tuple[requests.Session, str]:
    http = requests.Session()
    params = {"EIO": "4", "transport": "polling"}
    sid = json.loads(http.get(node.url + "/", params=params, timeout=5).text[1:])["sid"]
    assert http.post(node.url + "/", params={**params, "sid": sid}, data="40", timeout=5).ok
    return http, sid


def q(sid: str) -> dict[str, str]:
    return {"EIO": "4", "transport": "polling", "sid": sid}


def rss_mib(node) -> float:
    with open(f"/proc/{node.proc.pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def counted(node, name: str, **labels: str) -> float:
    return node.metric(name, 0, **labels)


# -- frames


def test_a_message_in_endless_empty_fragments_is_refused_and_freezes_no_one(node):
    """Was: each continuation re-summed every earlier one, and empty ones never reached a limit."""
    with Bystander(node):
        ws = ws_connect(node)
        stream = client_frame(ABNF.OPCODE_TEXT, b"4", fin=0)
        stream += client_frame(ABNF.OPCODE_CONT, b"", fin=0) * 60_000
        with contextlib.suppress(OSError):  # the node may close it while it is sent
            ws.sock.sendall(stream + client_frame(ABNF.OPCODE_CONT, b"2", fin=1))
        assert closed_by_node(ws) in (1009, 0)
    assert "more than 1000 fragments" in node.log()


def test_pings_that_are_never_read_are_refused_not_buffered(node):
    """Was: a pong queued for every ping of a client that never reads, without end."""
    before = rss_mib(node)
    with Bystander(node):
        sock = socket.create_connection((LOOPBACK, node.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                "GET /?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        ping = client_frame(ABNF.OPCODE_PING, b"p" * 125)
        sent = 0
        with pytest.raises(OSError):
            for _ in range(200):  # 200 x 1,000 pings of 125 bytes, none of the pongs read
                sock.sendall(ping * 1000)
                sent += 1000
        sock.close()
    assert sent < 200_000, "the node took every ping"
    assert "pings left unread" in node.log()
    assert rss_mib(node) - before < 30


# -- long-polling


def test_a_post_of_many_packets_is_refused_before_it_is_decoded(node):
    """Was: 450,000 pings in one POST were decoded before anything was checked."""
    pings = "\x1e".join(["3"] * (MAX_PAYLOAD // 2 - 1))
    with Bystander(node):
        http, sid = polling_session(node)
        response = http.post(node.url + "/", params=q(sid), data=pings, timeout=10)
        assert response.status_code == 413
        assert response.json() == {"error": "more than 2000 packets"}
        # and for a session that does not exist, four at once: refused unread
        threads = [
            threading.Thread(
                target=requests.post,
                args=(node.url + "/",),
                kwargs={"params": q("no-such-session"), "data": pings, "timeout": 30},
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def test_a_chunked_post_is_refused_not_dropped(node):
    """Was: answered 200 and its packets silently dropped."""
    http, sid = polling_session(node)
    response = http.post(
        node.url + "/", params=q(sid), data=iter([b"42", b'["whoami"]']), timeout=5
    )
    assert response.status_code == 411
    assert "Content-Length" in response.json()["error"]


def test_a_polling_client_that_never_polls_is_dropped_when_its_queue_is_full(node):
    """Was: blind pongs kept it alive and everything sent to it piled up (161 MB)."""
    before = rss_mib(node)
    dropped = counted(node, "wsk_clients_dropped_total", reason="queue")
    with Bystander(node):
        http, sid = polling_session(node)
        room = {"room": "hoard"}
        post = http.post(node.url + "/", params=q(sid), data="421" + json.dumps(["join", room]))
        assert post.ok
        blob = "z" * 200_000
        for _ in range(40):  # 8 MB for itself, never read, each POST with a pong
            body = "3\x1e42" + json.dumps(["publish", {**room, "data": blob}])
            if not http.post(node.url + "/", params=q(sid), data=body, timeout=10).ok:
                break
    assert counted(node, "wsk_clients_dropped_total", reason="queue") == dropped + 1
    assert rss_mib(node) - before < 40


# -- Socket.IO packets


@pytest.mark.parametrize(
    "packet",
    [
        "42[]",
        "42{}",
        "42[{}]",
        "42[[1]]",
        "42" + "[" * 100_000,
        '452-["publish",{"data":{"_placeholder":true,"num":7}}]',
    ],
    ids=["empty", "object", "object-name", "list-name", "deep-json", "wrong-placeholder"],
)
@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_a_malformed_event_is_one_log_line_not_a_traceback(node, packet, transport):
    before = counted(node, "wsk_protocol_errors_total", kind="packet")
    with Bystander(node):
        if transport == "websocket":
            ws = ws_connect(node)
            ws.send(packet)
            if packet.startswith("45"):
                ws.send_binary(b"\x01\x02")
                ws.send_binary(b"\x03")
            assert closed_by_node(ws) is not None
        else:
            http, sid = polling_session(node)
            http.post(node.url + "/", params=q(sid), data=packet, timeout=10)
            if packet.startswith("45"):
                http.post(node.url + "/", params=q(sid), data="bAQI=\x1ebAw==", timeout=10)
            wait_until(
                lambda: (
                    http.get(node.url + "/", params=q(sid), timeout=10).text.endswith("1") or True
                ),
                5,
            )
        wait_until(
            lambda: counted(node, "wsk_protocol_errors_total", kind="packet") > before,
            5,
            what="the refusal to be counted",
        )
    assert "Traceback" not in node.log()


def test_announced_binary_attachments_are_bounded_in_number_and_size(node):
    """Was: '459999999999-' then 80 frames of 999 KB, all kept until the disconnect."""
    before = rss_mib(node)
    with Bystander(node):
        ws = ws_connect(node)
        ws.send('459999999999-["publish",{"data":{"_placeholder":true,"num":0}}]')
        assert closed_by_node(ws) is not None
        ws = ws_connect(node)
        ws.send('463-["publish",{"data":[{"_placeholder":true,"num":0}]}]')
        with pytest.raises(OSError):
            for _ in range(80):
                ws.send_binary(b"\xff" * 999_000)
        ws.close()
    log = node.log()
    assert "more than 64 binary attachments" in log
    assert f"attachments over {MAX_PAYLOAD} bytes" in log
    assert rss_mib(node) - before < 30


def test_clients_cannot_raise_connect_or_disconnect(node):
    """Was: 50 '42["disconnect"]' drove wsk_connected_clients to -47; a fake connect was logged."""
    with Bystander(node):
        connected = counted(node, "wsk_connected_clients")
        for _ in range(5):
            ws = ws_connect(node)
            with contextlib.suppress(OSError):  # closed at the first one
                for _ in range(10):
                    ws.send('42["disconnect"]')
            closed_by_node(ws)
        ws = ws_connect(node)
        ws.send('42["connect",{"REMOTE_ADDR":"203.0.113.66"}]')
        closed_by_node(ws)
        wait_until(lambda: counted(node, "wsk_connected_clients") == connected, 5, what="clients")
    assert "203.0.113.66" not in node.log()
    assert "'disconnect' is an event only the server raises" in node.log()


def test_a_test000_payload_is_logged_as_a_short_prefix(node):
    client = RecordingClient().connect(node.url, path="/", transport="websocket")
    try:
        client.sio.emit("test000", {"text": "q" * 100_000})
        client.call("whoami")
    finally:
        client.close()
    line = next(
        line for line in node.log().splitlines() if "test000 from" in line and "qqq" in line
    )
    assert len(line) < 500
    assert "more characters" in line


# -- HTTP


def test_slow_and_silent_connections_cannot_hold_a_full_node(node):
    """Was: no deadline; a client trickling one header byte every 2 s held its slot for ever."""
    with Bystander(node):
        slow = []
        for _ in range(LIMITS["max_connections"] + 5):
            sock = socket.create_connection((LOOPBACK, node.port))
            sock.sendall(b"G")
            slow.append(sock)
        silent = [socket.create_connection((LOOPBACK, node.port)) for _ in range(20)]
        try:
            # the node is full: it says so at once instead of leaving the check in its backlog
            assert requests.get(node.url + "/healthz", timeout=5).status_code == 503
            for sock in slow:
                sock.sendall(b"E")  # a byte now and then, never a whole request
            for sock in [*slow, *silent]:
                sock.settimeout(10)
                answer = sock.recv(4096)  # at the 2 s deadline (or the full node's)
                assert answer == b"" or answer.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503"))
        finally:
            for sock in [*slow, *silent]:
                sock.close()
        # and then it serves new clients again
        wait_until(lambda: requests.get(node.url + "/healthz", timeout=5).ok, 10, what="room")
        RecordingClient().connect(node.url, path="/", transport="websocket").close()
    assert "no complete request within 2 s" in node.log()


def test_an_idle_keep_alive_connection_is_closed_quietly_and_counted(node):
    """Was: an idle keep-alive connection (HAProxy keeps some) got a 408 and counted as refused.

    A 408 there can be read as the answer to a request that crosses it; a request
    that has started and stalls still gets its 408.
    """
    idle_before = counted(node, "wsk_idle_connections_closed_total")
    refused_before = counted(node, "wsk_connections_refused_total", reason="request_timeout")
    with (
        socket.create_connection((LOOPBACK, node.port)) as idle,
        socket.create_connection((LOOPBACK, node.port)) as stalled,
    ):
        request = b"GET /healthz HTTP/1.1\r\nHost: wsk\r\n\r\n"
        for sock in (idle, stalled):
            sock.settimeout(10)
            sock.sendall(request)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        stalled.sendall(b"GET /healthz HTTP/1.1\r\n")  # a second request that never ends
        assert idle.recv(4096) == b""  # closed at the deadline, with no answer
        assert stalled.recv(4096).startswith(b"HTTP/1.1 408")
    wait_until(
        lambda: counted(node, "wsk_idle_connections_closed_total") == idle_before + 1,
        5,
        what="the idle close counted",
    )
    assert (
        counted(node, "wsk_connections_refused_total", reason="request_timeout")
        == refused_before + 1
    )


def test_a_full_node_answers_its_health_check_at_once(node):
    """Was: a full node left /healthz in its listen backlog; HAProxy could not tell."""
    held = [
        socket.create_connection((LOOPBACK, node.port)) for _ in range(LIMITS["max_connections"])
    ]
    try:
        response = requests.get(node.url + "/healthz", timeout=5)
        assert response.status_code == 503
        assert response.json()["status"] == "full"
        assert requests.get(
            node.url + "/", params={"EIO": "4", "transport": "polling"}, timeout=5
        ).json() == {"error": "node is full"}
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: requests.get(node.url + "/healthz", timeout=5).status_code == 200, 10)


@pytest.mark.parametrize(
    "headers",
    [
        {"Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
        {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
    ],
    ids=["no-connection-upgrade", "non-ascii-key"],
)
def test_a_bad_websocket_handshake_gets_a_400_and_leaves_no_session(node, headers):
    """Was: a 500 with nothing logged, and a session left behind."""
    key = "dGhlIHNhbXBsZSBub25jZQ==" if "Connection" not in headers else "dGhlIHNhbXBsZSBub25jZQ==é"
    before = node.health()[1]["clients"]
    raw = (
        "GET /?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        + f"Sec-WebSocket-Key: {key}\r\n\r\n"
    ).encode("utf-8")
    with socket.create_connection((LOOPBACK, node.port), timeout=5) as sock:
        sock.sendall(raw)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert node.health()[1]["clients"] == before
    assert "refused handshake" in node.log()


def test_a_second_upgrade_of_one_session_is_refused_and_none_outlives_it(node):
    """Was: two upgrades for one polling session left the first open after the session ended."""
    http, sid = polling_session(node)
    url = f"ws://{LOOPBACK}:{node.port}/?EIO=4&transport=websocket&sid={sid}"
    first = websocket.create_connection(url, timeout=5)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=5)
    assert refused.value.status_code == 400
    # the session ends (a close packet over polling): its pending upgrade goes with it
    http.post(node.url + "/", params=q(sid), data="1", timeout=5)
    assert closed_by_node(first) is not None


# -- per-client limits


def test_a_client_over_its_event_rate_gets_errors_then_is_disconnected(node):
    dropped = counted(node, "wsk_clients_dropped_total", reason="rate")
    with Bystander(node):
        flood = RecordingClient(reconnection=False).connect(
            node.url, path="/", transport="websocket"
        )
        answers = []
        for _ in range(400):
            try:
                flood.sio.emit("whoami", callback=answers.append)
            except Exception:
                break
        wait_until(lambda: flood.disconnects, 10, what="the flood to be disconnected")
        flood.close()
    assert any("error" in answer and "rate limit" in answer["error"] for answer in answers)
    assert counted(node, "wsk_clients_dropped_total", reason="rate") == dropped + 1
    assert counted(node, "wsk_events_refused_total", reason="rate") > 0


def test_a_client_may_be_in_only_so_many_rooms(node):
    client = RecordingClient().connect(node.url, path="/", transport="websocket")
    try:
        answers = [
            client.call("join", {"room": f"r{i}"}) for i in range(LIMITS["client_max_rooms"] + 1)
        ]
        assert all("error" not in answer for answer in answers[:-1])
        assert answers[-1] == {"error": "at most 5 rooms per client"}
        assert client.call("join", {"room": "r0"}) == {"node": node.node_name, "room": "r0"}
        assert client.call("leave", {"room": "r0"})["room"] == "r0"
        assert "error" not in client.call("join", {"room": "r9"})
    finally:
        client.close()


# -- the accept loop and the ping sweep


ACCEPT_ERRORS = """
import errno, eventlet
eventlet.monkey_patch()
import urllib.request
from wsk.config import Config
from wsk.transport import http

class Flaky:
    "A real listener whose accept() first fails once with each error Linux may pass on."
    def __init__(self, sock, errors):
        self.sock, self.errors = sock, list(errors)
    def accept(self):
        if self.errors:
            raise OSError(self.errors.pop(0), "injected")
        return self.sock.accept()
    def __getattr__(self, name):
        return getattr(self.sock, name)

listener = eventlet.listen(("127.0.0.1", 0))
errors = [errno.ENETDOWN, errno.EHOSTUNREACH, errno.EPERM, errno.EPROTO, errno.ENETUNREACH]
app = lambda environ, start: (start("200 OK", [("Content-Length", "2")]), [b"ok"])[1]
eventlet.spawn(http.serve, Flaky(listener, errors), app, http.Limit(10), Config())
port = listener.getsockname()[1]
print(urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode())
"""


def test_the_accept_loop_survives_the_errors_linux_passes_on():
    result = subprocess.run(
        [sys.executable, "-c", ACCEPT_ERRORS], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr


SWEEP_ERRORS = """
import eventlet
from wsk.config import Config
from wsk.transport.engine import EngineServer

class Broken:
    closed = closing = False
    def check_ping_timeout(self):
        raise RuntimeError("injected")

class Fine:
    closed = closing = False
    checked = 0
    def check_ping_timeout(self):
        Fine.checked += 1

server = EngineServer(Config(ping_timeout=1), async_mode="eventlet")
server.sockets = {"a": Broken(), "b": Fine()}
server.sweep()
print("checked after a broken session:", Fine.checked)

sweeps = []
def failing_sweep():
    sweeps.append(1)
    raise RuntimeError("injected")
server.sweep = failing_sweep
monitor = eventlet.spawn(server.monitor_sessions)
eventlet.sleep(1.2)  # four turns of 0.25 s
server.service_task_event.set()
monitor.wait()
print("sweeps run after failing ones:", len(sweeps) >= 3)
"""


def test_an_error_in_the_ping_sweep_does_not_end_ping_detection():
    result = subprocess.run(
        [sys.executable, "-c", SWEEP_ERRORS], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.splitlines() == [
        "checked after a broken session: 1",
        "sweeps run after failing ones: True",
    ], result.stderr
