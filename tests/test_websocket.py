"""wsk.transport.websocket, spoken to by websocket-client frame by frame."""

from __future__ import annotations

import json
import random
import socket
import time

import pytest
import requests
import websocket
from websocket import ABNF

from processes import wait_until
from wsk.transport.frames import OP_BINARY, OP_TEXT, accept_key, frame, handshake_problem, unmask

MAX_PAYLOAD = 20_000


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node (and its Redis), spoken to directly."""
    from conftest import Cluster

    cluster = Cluster(tmp_path_factory.mktemp("websocket")).start(nodes=1, max_payload=MAX_PAYLOAD)
    yield cluster.nodes[0]
    cluster.stop()


def connect(node) -> websocket.WebSocket:
    """A websocket Engine.IO session with the node, connected to the main namespace."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{node.port}/?EIO=4&transport=websocket", timeout=5
    )
    assert ws.recv().startswith("0{")
    ws.send("40")
    answer = ws.recv()
    assert answer.startswith("40{")
    ws.sio_sid = json.loads(answer[2:])["sid"]  # the Socket.IO sid, which the node logs
    return ws


def next_text(ws: websocket.WebSocket, prefix: str) -> str:
    """The next text message starting with ``prefix``, answering pings and skipping the rest."""
    while True:
        message = ws.recv()
        if message == "2":
            ws.send("3")
        elif isinstance(message, str) and message.startswith(prefix):
            return message


def close_code(ws: websocket.WebSocket) -> int | None:
    """Read until the node closes the websocket; the code of its close frame, if it sent one."""
    while True:
        try:
            opcode, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            return None
        if opcode == ABNF.OPCODE_CLOSE:
            return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


def client_frame(opcode: int, payload: bytes, fin: int = 1, rsv1: int = 0, mask: int = 1) -> bytes:
    return ABNF(fin, rsv1, 0, 0, opcode, mask, payload).format()


def unknown_opcode_frame() -> bytes:
    """A masked, final frame of opcode 3, which websocket-client refuses to build."""
    mask = b"\x01\x02\x03\x04"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"42"))
    return bytes([0x83, 0x80 | len(payload)]) + mask + payload


def test_a_frame_is_the_frame_websocket_client_would_write_unmasked():
    for opcode in (OP_TEXT, OP_BINARY):
        for length in (0, 1, 124, 125, 126, 65535, 65536, 200_000):
            payload = bytes(range(256)) * (length // 256) + b"x" * (length % 256)
            reference = ABNF(1, 0, 0, 0, opcode, 0, payload).format()
            assert frame(opcode, payload) == reference, (opcode, length)


def test_the_handshake_answer_and_unmasking_follow_rfc6455():
    # the example of RFC 6455, section 1.3
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    for length in (0, 1, 3, 4, 5, 1000):
        payload = bytes(range(256)) * 4
        masked = ABNF.mask(b"\x0f\xf0\x55\xaa", payload[:length])
        assert unmask(masked, b"\x0f\xf0\x55\xaa") == payload[:length]
    good = {
        "HTTP_UPGRADE": "websocket",
        "HTTP_CONNECTION": "keep-alive, Upgrade",
        "HTTP_SEC_WEBSOCKET_VERSION": "13",
        "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    assert handshake_problem(good) is None
    assert "version" in handshake_problem({**good, "HTTP_SEC_WEBSOCKET_VERSION": "8"})
    assert "Key" in handshake_problem({**good, "HTTP_SEC_WEBSOCKET_KEY": "c2hvcnQ="})
    assert "Key" in handshake_problem({**good, "HTTP_SEC_WEBSOCKET_KEY": "!!"})
    assert "Key" in handshake_problem(
        {**good, "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==é"}
    )
    assert "Connection" in handshake_problem({**good, "HTTP_CONNECTION": "keep-alive"})


def test_a_fragmented_message_with_a_ping_inside_is_one_message(node):
    ws = connect(node)
    ws.send_frame(ABNF.create_frame("42", ABNF.OPCODE_TEXT, fin=0))
    ws.ping(b"between")
    ws.send_frame(ABNF.create_frame('1["who', ABNF.OPCODE_CONT, fin=0))
    ws.send_frame(ABNF.create_frame('ami"]', ABNF.OPCODE_CONT, fin=1))
    pong = None
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == ABNF.OPCODE_PONG:
            pong = data
        elif data.startswith(b"431"):
            break
    assert pong == b"between"
    assert json.loads(data[3:])[0]["node"] == node.node_name
    ws.close()


def test_frames_split_anywhere_or_sent_together_arrive_whole_and_in_order(node):
    ws = connect(node)
    calls = 60
    stream = b"".join(
        client_frame(ABNF.OPCODE_TEXT, f'42{n}["whoami"]'.encode()) for n in range(calls)
    )
    rng = random.Random(7)
    pos = 0
    while pos < len(stream):
        # single bytes, a frame and a half, several frames at once
        step = rng.choice([1, 2, 5, 17, 40, 300])
        ws.sock.sendall(stream[pos : pos + step])
        pos += step
        if rng.random() < 0.2:
            time.sleep(0.01)
    acks = [int(next_text(ws, "43")[2:].split("[", 1)[0]) for _ in range(calls)]
    assert acks == list(range(calls))
    ws.close()


def test_a_large_message_in_many_reads_arrives_whole(node):
    ws = connect(node)
    data = "z" * (MAX_PAYLOAD - 100)
    ws.send(f'4242["publish",{{"data":"{data}"}}]')
    # the ack and the broadcast, in either order
    ack = message = None
    while ack is None or message is None:
        text = next_text(ws, "4")
        if text.startswith("4342"):
            ack = text
        elif text.startswith('42["message"'):
            message = json.loads(text[2:])[1]
    assert message["data"] == data
    ws.close()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (client_frame(ABNF.OPCODE_TEXT, b"42", mask=0), 1002),
        (client_frame(ABNF.OPCODE_TEXT, b"42", rsv1=1), 1002),
        (client_frame(ABNF.OPCODE_CONT, b"42"), 1002),
        (client_frame(ABNF.OPCODE_TEXT, b"4\xff\xfe"), 1007),
        (unknown_opcode_frame(), 1002),
        (client_frame(ABNF.OPCODE_PING, b"x" * 126), 1002),
        (client_frame(ABNF.OPCODE_BINARY, b"x" * (MAX_PAYLOAD + 1)), 1009),
    ],
    ids=[
        "unmasked",
        "reserved-bit",
        "stray-continuation",
        "not-utf8",
        "unknown-opcode",
        "long-control",
        "oversized",
    ],
)
def test_a_client_breaking_rfc6455_gets_the_right_close_code_and_no_one_else_notices(
    node, raw, code
):
    bystander = connect(node)
    ws = connect(node)
    ws.sock.sendall(raw)
    assert close_code(ws) == code
    bystander.send('421["whoami"]')
    assert next_text(bystander, "431")
    assert node.health()[0] == 200
    bystander.close()


def test_a_close_frame_is_answered_and_ends_the_session(node):
    ws = connect(node)
    ws.send_close(1000)
    assert close_code(ws) == 1000
    # by its own log line: the session count moves with other tests' sessions too
    ended = f"client {ws.sio_sid} disconnected"
    wait_until(lambda: ended in node.log(), 5, what="the session to end")


def test_a_client_that_stops_answering_pings_is_closed_and_one_that_answers_stays(node):
    # the tests' nodes ping every second and wait 3 s for the answer
    silent = connect(node)
    polite = connect(node)
    polite.settimeout(0.5)
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        try:
            if polite.recv() == "2":
                polite.send("3")
        except websocket.WebSocketTimeoutException:
            pass
    polite.settimeout(5)
    # the silent one got its pings, then a close frame
    seen = []
    while not seen or seen[-1] != "close":
        opcode, data = silent.recv_data(control_frame=True)
        seen.append("close" if opcode == ABNF.OPCODE_CLOSE else data.decode())
    assert "2" in seen, seen
    polite.send('421["whoami"]')
    assert next_text(polite, "431")
    polite.close()


def test_binary_data_crosses_the_websocket_both_ways(node):
    from clients import RecordingClient

    sender = RecordingClient().connect(node.url, path="/", transport="websocket")
    receiver = RecordingClient().connect(node.url, path="/", transport="websocket")
    try:
        blob = bytes(range(256)) * 40  # 10 KB with every byte value: attachments as binary frames
        sender.call("publish", {"data": blob})
        got = receiver.wait_for("message", lambda m: isinstance(m["data"], bytes))
        assert got["data"] == blob
    finally:
        sender.close()
        receiver.close()


def test_an_unsupported_websocket_version_gets_a_400(node):
    before = node.health()[1]["clients"]
    response = requests.get(
        f"http://127.0.0.1:{node.port}/",
        params={"EIO": "4", "transport": "websocket"},
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "8",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
        timeout=5,
    )
    assert response.status_code == 400
    assert response.headers["Sec-WebSocket-Version"] == "13"
    # and the session opened for it is gone
    assert node.health() == (200, {**node.health()[1], "clients": before})


def test_a_silent_client_is_closed_even_when_nothing_is_sent_to_it(tmp_path):
    # no heartbeats: only the node's sweep of its sessions finds that the one ping
    # the client got went unanswered
    from conftest import Cluster

    cluster = Cluster(tmp_path).start(nodes=1, heartbeat_interval=3600)
    try:
        quiet = cluster.nodes[0]
        silent = connect(quiet)
        # a ping after 1 s, no answer for 3 s, then the next sweep (every 0.75 s)
        # closes it: before the client's 5 s read timeout
        assert close_code(silent) == 1000
        wait_until(lambda: quiet.health()[1]["clients"] == 0, 5, what="the session to go")
    finally:
        cluster.stop()


def test_a_failed_upgrade_closes_the_websocket_and_the_session_goes_on_polling(node):
    base = f"http://127.0.0.1:{node.port}/"
    http = requests.Session()
    opened = http.get(base, params={"EIO": "4", "transport": "polling"}, timeout=5)
    sid = json.loads(opened.text[1:])["sid"]
    polling = {"EIO": "4", "transport": "polling", "sid": sid}
    assert http.post(base, params=polling, data=b"40", timeout=5).status_code == 200
    assert "40{" in http.get(base, params=polling, timeout=5).text

    ws = websocket.create_connection(
        f"ws://127.0.0.1:{node.port}/?EIO=4&transport=websocket&sid={sid}", timeout=5
    )
    ws.send("not a probe")
    # returns once the node has closed it; a read timeout (5 s) would raise instead
    close_code(ws)

    assert http.post(base, params=polling, data=b'421["whoami"]', timeout=5).status_code == 200
    answered = ""
    while "431[" not in answered:
        answered += http.get(base, params=polling, timeout=5).text
    assert node.node_name in answered


def test_frames_sent_with_the_handshake_are_not_lost(node):
    """A client may write its first frames before it has the handshake's answer."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = (
        "GET /?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    frames = client_frame(ABNF.OPCODE_TEXT, b"40") + client_frame(
        ABNF.OPCODE_TEXT, b'421["whoami"]'
    )
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(request + frames)  # one write: the node reads them together
        seen = b""
        while b'431[{"node"' not in seen:
            chunk = sock.recv(4096)
            assert chunk, f"closed; got {seen!r}"
            seen += chunk
    assert seen.startswith(b"HTTP/1.1 101")
