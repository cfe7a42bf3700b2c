"""Bad input gets a clean error; the node keeps serving everyone else and loses nothing."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
import requests
import websocket

from processes import BIN

MAX_PAYLOAD = 20_000


@pytest.fixture(scope="module")
def small_payload_cluster(tmp_path_factory):
    from conftest import Cluster

    cluster = Cluster(tmp_path_factory.mktemp("bad-input")).start(max_payload=MAX_PAYLOAD)
    yield cluster
    cluster.stop()


class SteadyTraffic:
    """One client publishes numbered messages while others count what arrives."""

    def __init__(self, cluster, receivers: int = 4) -> None:
        self.sender = cluster.client()
        self.receivers = [cluster.client() for _ in range(receivers)]
        self.sent = 0
        self.running = True
        self.thread = threading.Thread(target=self._publish, daemon=True)

    def _publish(self) -> None:
        while self.running:
            self.sender.call("publish", {"data": {"seq": self.sent}})
            self.sent += 1
            time.sleep(0.02)

    def __enter__(self) -> SteadyTraffic:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()
        for receiver in [self.sender, *self.receivers]:
            receiver.wait_for("message", lambda m: m["data"] == {"seq": self.sent - 1})
            seqs = [m["data"]["seq"] for m in receiver.received("message") if "seq" in m["data"]]
            assert seqs == list(range(self.sent)), "a client missed or reordered messages"
            assert receiver.disconnects == []


def handshake(base: str, eio: str = "4") -> requests.Response:
    return requests.get(base + "/wsk/", params={"EIO": eio, "transport": "polling"}, timeout=5)


def open_session(base: str) -> tuple[requests.Session, str]:
    """A long-polling session through HAProxy, connected to the main namespace."""
    http = requests.Session()
    response = http.get(base + "/wsk/", params={"EIO": "4", "transport": "polling"}, timeout=5)
    sid = json.loads(response.text[1:])["sid"]
    assert http.post(base + "/wsk/", params=_q(sid), data=b"40", timeout=5).status_code == 200
    return http, sid


def session_is_closed(http: requests.Session, base: str, sid: str) -> bool:
    """The next poll answers at once: with a close packet, or 400 once the session is gone."""
    poll = http.get(base + "/wsk/", params=_q(sid), timeout=5)
    return poll.status_code == 400 or poll.text.endswith("1")


def _q(sid: str) -> dict[str, str]:
    return {"EIO": "4", "transport": "polling", "sid": sid}


def test_an_eio3_handshake_gets_a_clear_400(small_payload_cluster):
    with SteadyTraffic(small_payload_cluster):
        response = handshake(small_payload_cluster.haproxy.url, eio="3")
    assert response.status_code == 400
    assert "unsupported version" in response.text


def test_an_unknown_session_id_gets_a_400(small_payload_cluster):
    base = small_payload_cluster.haproxy.url
    with SteadyTraffic(small_payload_cluster):
        response = requests.get(base + "/wsk/", params=_q("no-such-session"), timeout=5)
        post = requests.post(base + "/wsk/", params=_q("no-such-session"), data="40", timeout=5)
    assert response.status_code == 400 and post.status_code == 400
    assert "Invalid session" in response.text


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"4" + b"x" * MAX_PAYLOAD, 413, f"payload over {MAX_PAYLOAD} bytes"),
        (b"garbage", 400, "not an Engine.IO payload"),
        (b"9nine", 400, "unknown packet type 9"),
        (b"\xff\xfe", 400, "not an Engine.IO payload"),
    ],
    ids=["oversized", "not-engineio", "unknown-type", "not-utf8"],
)
def test_a_bad_polling_post_gets_a_clear_error_and_ends_only_its_session(
    small_payload_cluster, body, status, error
):
    base = small_payload_cluster.haproxy.url
    with SteadyTraffic(small_payload_cluster):
        http, sid = open_session(base)
        response = http.post(base + "/wsk/", params=_q(sid), data=body, timeout=5)
        assert (response.status_code, response.json()) == (status, {"error": error})
        # the session is closed: its next poll says so at once instead of hanging
        assert session_is_closed(http, base, sid)


def test_a_malformed_socketio_packet_closes_only_that_session(small_payload_cluster):
    base = small_payload_cluster.haproxy.url
    with SteadyTraffic(small_payload_cluster):
        http, sid = open_session(base)
        response = http.post(base + "/wsk/", params=_q(sid), data=b'42["publish", {oops', timeout=5)
        assert response.status_code == 200  # Engine.IO delivered it; Socket.IO refuses it
        assert session_is_closed(http, base, sid)
    assert any("malformed Socket.IO packet" in node.log() for node in small_payload_cluster.nodes)


@pytest.mark.parametrize(
    "frame",
    ["garbage", "4" + "x" * (MAX_PAYLOAD + 1), '42["publish", {oops'],
    ids=["not-engineio", "oversized", "bad-socketio"],
)
def test_a_bad_websocket_frame_closes_only_that_connection(small_payload_cluster, frame):
    ws_url = (
        small_payload_cluster.haproxy.url.replace("http", "ws") + "/wsk/?EIO=4&transport=websocket"
    )
    with SteadyTraffic(small_payload_cluster):
        ws = websocket.create_connection(ws_url, timeout=5)
        assert ws.recv().startswith("0{")
        ws.send("40")
        assert ws.recv().startswith("40")
        ws.send(frame)
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while True:  # heartbeats and pings may come first; then the close
                if ws.recv() in ("", "1"):
                    raise websocket.WebSocketConnectionClosedException("closed")
    for node in small_payload_cluster.nodes:
        assert node.health()[0] == 200


def test_bad_input_is_counted_in_metrics(small_payload_cluster):
    text = "".join(
        requests.get(node.url + "/metrics", timeout=5).text for node in small_payload_cluster.nodes
    )
    counts = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("wsk_protocol_errors_total")
    ]
    assert sum(counts) >= 1


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "70000"], {}, "--port='70000': a port is a number from 1 to 65535"),
        (["--port", "http"], {}, "--port='http': not a whole number"),
        (["--redis-url", "http://x"], {}, "a Redis URL starts with redis://"),
        (["--redis-url", "redis://:x@host:port/0"], {}, "not a valid URL"),
        (["--log-level", "loud"], {}, "must be one of debug, info, warning, error"),
        (["--heartbeat-interval", "0"], {}, "must be more than 0 seconds"),
        (["--heartbeat-interval", "nan"], {}, "must be a finite number of seconds"),
        (["--cors-origins", "example.com"], {}, "is not an origin"),
        (["--path", "wsk"], {}, "a path starts with /"),
        ([], {"WSK_PORT": "0"}, "WSK_PORT='0': a port is a number from 1 to 65535"),
        ([], {"WSK_MAX_CONNECTIONS": "-5"}, "WSK_MAX_CONNECTIONS='-5': must be 1 or more"),
        (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
    ],
)
def test_a_bad_option_stops_wsk_server_with_one_clear_line(args, env, message):
    result = subprocess.run(
        [BIN / "wsk-server", *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", **env},
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("wsk-server: error: ")
    assert message in result.stderr


def test_a_port_already_in_use_is_one_clear_error(small_payload_cluster):
    taken = small_payload_cluster.nodes[0].port
    result = subprocess.run(
        [BIN / "wsk-server", "--host", "127.0.0.1", "--port", str(taken)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"cannot serve on 127.0.0.1:{taken}" in result.stderr
    assert "Traceback" not in result.stderr
