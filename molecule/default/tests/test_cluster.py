"""End-to-end checks of a deployed wsk cluster, from outside, through HAProxy.

Molecule's verify.yml runs this file with the project's Python after the
cluster has converged; every value comes from the environment:

    WSK_VERIFY_URL             HAProxy's public side, e.g. http://127.0.0.1:8080
    WSK_VERIFY_PATH            public Socket.IO path prefix, e.g. /wsk
    WSK_VERIFY_COOKIE          HAProxy's stickiness cookie name
    WSK_VERIFY_PROCESSES       every wsk process as host:port, comma-separated
    WSK_VERIFY_STATS_URL       HAProxy's stats port, e.g. http://127.0.0.1:8404
    WSK_VERIFY_STATS_USER      user and password of the stats port
    WSK_VERIFY_STATS_PASSWORD
    WSK_VERIFY_RELOAD_COMMAND  optional shell command that reloads HAProxy
    WSK_VERIFY_ROLL_COMMAND    optional shell command that changes the nodes'
                               configuration, so that every process restarts in turn
    WSK_VERIFY_NODE_DIR        optional: the project's tests/node, whose socket.io-client
                               versions (2.x among them) are run against the cluster

The clients are python-socketio clients (wsk.client.Client: python-socketio's,
with ordered events and connection-state recovery). The nodes must send okok
heartbeats about every second (the demo inventory sets that).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import requests

from wsk.client import Client

URL = os.environ.get("WSK_VERIFY_URL", "http://127.0.0.1:8080")
PATH = os.environ.get("WSK_VERIFY_PATH", "/wsk")
COOKIE = os.environ.get("WSK_VERIFY_COOKIE", "WSKSRV")
PROCESSES = {p for p in os.environ.get("WSK_VERIFY_PROCESSES", "").split(",") if p}
HOSTS = {p.rsplit(":", 1)[0] for p in PROCESSES}
STATS_URL = os.environ.get("WSK_VERIFY_STATS_URL", "http://127.0.0.1:8404")
STATS_AUTH = (
    os.environ.get("WSK_VERIFY_STATS_USER", "admin"),
    os.environ.get("WSK_VERIFY_STATS_PASSWORD", ""),
)
RELOAD_COMMAND = os.environ.get("WSK_VERIFY_RELOAD_COMMAND", "")
ROLL_COMMAND = os.environ.get("WSK_VERIFY_ROLL_COMMAND", "")

WEBSOCKET = ["websocket"]
POLLING = ["polling"]
UPGRADING = ["polling", "websocket"]
# leastconn spreads clients over every process; this many reach every host.
CLIENTS_PER_TEST = 8


class Probe:
    """A connected Socket.IO client that records what the cluster sends it."""

    def __init__(self, transports: list[str], reconnection: bool = False) -> None:
        self.transports = transports
        self.sio = Client(reconnection=reconnection, reconnection_delay=0.2, randomization_factor=0)
        self.okok: list[dict] = []
        self.messages: list[dict] = []
        self.lock = threading.Lock()
        self.connects: list[bool] = []  # each connect: whether the session was recovered
        # the times the connection was lost; not len(connects) - 1: over polling, a
        # CONNECT answer later than the attempt's wait_timeout still fires "connect"
        # after the attempt was given up, so one lost connection can show two connects
        # (python-socketio's own reconnect waits 1 s; wsk.client keeps wait_timeout)
        self.disconnects = 0
        # each connect and disconnect, timed, with the process (sid prefix) or the reason
        self.events: list[str] = []
        self.started = time.monotonic()
        self.sio.on("okok", self._on_okok)
        self.sio.on("message", self._on_message)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)

    def _log(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:.1f}s {what}")

    def _on_connect(self) -> None:
        self.connects.append(self.sio.recovered)
        sid = self.sio.eio.sid or ""
        self._log(f"connect {sid.split('~')[0]}{' recovered' if self.sio.recovered else ''}")

    def _on_disconnect(self, reason: str = "") -> None:
        if reason != self.sio.reason.CLIENT_DISCONNECT:  # not the test's own close
            self.disconnects += 1
        self._log(f"disconnect ({reason}) via {self.sio.transport()}")

    # a broadcast carries its stream offset as a last argument (session recovery)

    def _on_okok(self, data: dict, *_offset: str) -> None:
        with self.lock:
            self.okok.append(data)

    def _on_message(self, data: dict, *_offset: str) -> None:
        with self.lock:
            self.messages.append(data)

    def connect(self) -> Probe:
        self.sio.connect(URL, socketio_path=PATH, transports=self.transports, wait_timeout=10)
        return self

    def whoami(self) -> dict:
        return self.sio.call("whoami", {}, timeout=10)

    @property
    def node(self) -> str:
        return self.whoami()["node"]

    @property
    def host(self) -> str:
        return self.node.rsplit(":", 1)[0]

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()


@contextmanager
def probes(transports: list[str], count: int = CLIENTS_PER_TEST) -> Iterator[list[Probe]]:
    opened: list[Probe] = []
    try:
        for _ in range(count):
            opened.append(Probe(transports).connect())
        yield opened
    finally:
        for probe in opened:
            probe.close()


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {seconds:.0f}s waiting for {what}")


def one_per_host(clients: list[Probe]) -> dict[str, Probe]:
    """A client on each host, or fail naming the hosts that got none."""
    found: dict[str, Probe] = {}
    for probe in clients:
        found.setdefault(probe.host, probe)
    assert set(found) == HOSTS, f"clients landed on {sorted(found)}, not on all of {sorted(HOSTS)}"
    return found


def test_the_inventory_names_processes_on_two_hosts_at_least():
    assert len(HOSTS) >= 2, f"WSK_VERIFY_PROCESSES={sorted(PROCESSES)}"


@pytest.mark.parametrize(
    "transports",
    [WEBSOCKET, POLLING, UPGRADING],
    ids=["websocket-only", "polling-only", "upgrading"],
)
def test_clients_connect_through_the_prefix_and_land_on_every_node(transports):
    with probes(transports) as clients:
        nodes = [probe.whoami() for probe in clients]
        assert all(n["sid"] for n in nodes)
        assert {n["node"] for n in nodes} <= PROCESSES
        one_per_host(clients)
        if transports == UPGRADING:
            wait_for(
                lambda: all(p.sio.transport() == "websocket" for p in clients),
                15,
                "every upgrading client to move to websocket",
            )
            # Upgraded through HAProxy, each is still served by the same node.
            assert [probe.whoami() for probe in clients] == nodes


def test_polling_clients_stay_on_their_node_across_poll_cycles():
    with probes(POLLING) as clients:
        first = {id(p): p.whoami() for p in clients}
        for probe in clients:
            assert COOKIE in probe.sio.eio.http.cookies, "HAProxy set no stickiness cookie"
        # Each okok ends a long poll, so every second is one more poll cycle
        # (and each whoami one more POST), all of which must reach the same node.
        started = time.monotonic()
        while time.monotonic() - started < 6:
            for probe in clients:
                assert probe.sio.connected
                assert probe.whoami() == first[id(probe)]
            time.sleep(0.5)
        for probe in clients:
            assert len(probe.okok) >= 4, "fewer poll cycles than expected"
            assert probe.sio.transport() == "polling"
        one_per_host(clients)


def test_a_publish_on_one_node_reaches_clients_on_the_others():
    room = f"verify-{uuid.uuid4().hex[:8]}"
    with probes(WEBSOCKET) as websockets, probes(POLLING) as polls:
        clients = websockets + polls
        for probe in clients:
            assert probe.sio.call("join", {"room": room}, timeout=10)["room"] == room
        by_host = one_per_host(clients)
        for host, publisher in by_host.items():
            payload = f"from-{host}-{uuid.uuid4().hex[:8]}"
            ack = publisher.sio.call("publish", {"room": room, "data": payload}, timeout=10)
            assert ack["node"].rsplit(":", 1)[0] == host

            def everyone_got_it(payload=payload):
                return all(any(m["data"] == payload for m in probe.messages) for probe in clients)

            wait_for(everyone_got_it, 10, f"{payload} to reach every client")
            for probe in clients:
                message = next(m for m in probe.messages if m["data"] == payload)
                assert message["room"] == room
                assert message["node"].rsplit(":", 1)[0] == host
                assert message["from"] == publisher.sio.get_sid()


def test_okok_heartbeats_arrive_from_every_process():
    with probes(WEBSOCKET, count=2) as clients:

        def heard(probe):
            with probe.lock:
                return {beat["node"] for beat in probe.okok}

        wait_for(
            lambda: all(heard(p) >= PROCESSES for p in clients),
            20,
            f"okok from every process {sorted(PROCESSES)}",
        )
        beat = clients[0].okok[-1]
        assert set(beat) >= {"node", "host", "text"}


def test_the_public_side_serves_only_the_prefix():
    assert requests.get(f"{URL}/", timeout=5).status_code == 404
    assert requests.get(f"{URL}{PATH}/metrics", timeout=5).status_code == 404
    health = requests.get(f"{URL}{PATH}/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["node"] in PROCESSES


def test_the_live_page_and_its_browser_bundle_come_from_the_deployed_nodes():
    # from the wheel the socketio role built and shipped: the package carries its static files
    page = requests.get(f"{URL}{PATH}/", timeout=10)
    bundle = requests.get(f"{URL}{PATH}/?asset=socket.io.min.js", timeout=10)
    script = requests.get(f"{URL}{PATH}?asset=page.js", timeout=10)
    assert page.status_code == 200, page.text
    assert page.headers["Content-Type"].startswith("text/html")
    assert 'src="?asset=page.js"' in page.text
    assert bundle.status_code == 200
    assert bundle.text.startswith("/*!\n * Socket.IO v4.8.")
    assert script.status_code == 200 and "socket.recovered" in script.text


def test_the_stats_port_wants_its_password():
    for path in ("/stats", "/metrics"):
        assert requests.get(f"{STATS_URL}{path}", timeout=5).status_code == 401
        wrong = requests.get(f"{STATS_URL}{path}", auth=(STATS_AUTH[0], "wrong"), timeout=5)
        assert wrong.status_code == 401
    stats = requests.get(f"{STATS_URL}/stats;csv", auth=STATS_AUTH, timeout=5)
    assert stats.status_code == 200
    up = {
        row.split(",")[1]
        for row in stats.text.splitlines()
        if row.startswith("wsk,") and row.split(",")[17] == "UP"
    }
    assert {p.replace(":", "-") for p in PROCESSES} <= up
    metrics = requests.get(f"{STATS_URL}/metrics", auth=STATS_AUTH, timeout=5)
    assert metrics.status_code == 200
    assert "haproxy_backend_active_servers" in metrics.text


@pytest.mark.skipif(not RELOAD_COMMAND, reason="WSK_VERIFY_RELOAD_COMMAND is not set")
def test_a_haproxy_reload_keeps_open_websockets():
    with probes(WEBSOCKET, count=4) as clients:
        before = [probe.whoami() for probe in clients]
        subprocess.run(shlex.split(RELOAD_COMMAND), check=True, timeout=60)
        time.sleep(2)
        for probe in clients:
            assert probe.sio.connected
        assert [probe.whoami() for probe in clients] == before
        with probes(WEBSOCKET, count=1) as late:
            assert late[0].whoami()["node"] in PROCESSES


def roll_under_a_busy_room(command: str, per_transport: int) -> tuple[list[Probe], float]:
    """Run ``command`` (it restarts every process in turn) while a room is busy.

    Checks that every client comes back with its session and has every acknowledged
    publish once and in order; returns the clients (closed) and the command's seconds.
    """
    room = f"roll-{uuid.uuid4().hex[:8]}"
    clients = [
        Probe(transports, reconnection=True).connect()
        for transports in (WEBSOCKET, POLLING, UPGRADING)
        for _ in range(per_transport)
    ]
    publisher = Probe(WEBSOCKET, reconnection=True).connect()
    acked: list[int] = []
    running = threading.Event()
    running.set()

    def publish() -> None:
        seq = 0
        while running.is_set():
            try:
                ack = publisher.sio.call("publish", {"room": room, "data": {"seq": seq}}, timeout=5)
            except Exception:  # between two connections: not acknowledged
                ack = None
            if ack and "offset" in ack:
                acked.append(seq)
            seq += 1
            time.sleep(0.05)

    try:
        for probe in clients:
            assert probe.sio.call("join", {"room": room}, timeout=10)["room"] == room
        one_per_host(clients)
        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        time.sleep(2)
        started = time.monotonic()
        subprocess.run(shlex.split(command), check=True, timeout=900)
        elapsed = time.monotonic() - started
        wait_for(lambda: all(p.sio.connected for p in clients), 30, "every client back")
        time.sleep(3)
        running.clear()
        thread.join()
        last = acked[-1]

        def seqs(probe: Probe) -> list[int]:
            with probe.lock:
                return [m["data"]["seq"] for m in probe.messages if m["room"] == room]

        wait_for(lambda: all(last in seqs(p) for p in clients), 30, "the last message everywhere")
        print(
            f"{command.split()[-1]}: {elapsed:.0f} s for {len(PROCESSES)} processes, disconnects"
            f" per client {[p.disconnects for p in clients]}, {len(acked)} acknowledged"
        )
        for probe in clients:
            print(f"  {','.join(probe.transports)}: {'; '.join(probe.events)}")
        for probe in clients:
            got = seqs(probe)
            assert len(got) == len(set(got)), f"{probe.transports}: duplicates"
            assert got == sorted(got), f"{probe.transports}: out of order"
            missing = sorted(set(acked) - set(got))
            assert not missing, f"{probe.transports} missed {missing[:10]}"
            # each reconnect during the roll came back with its session
            assert all(probe.connects[1:]), probe.connects
        return clients, elapsed
    finally:
        running.clear()
        publisher.close()
        for probe in clients:
            probe.close()


# a whole playbook run against four containers: slower than the suite's 180 s on a busy host
@pytest.mark.timeout(600)
@pytest.mark.skipif(not ROLL_COMMAND, reason="WSK_VERIFY_ROLL_COMMAND is not set")
def test_a_rolling_restart_under_live_clients_loses_and_repeats_nothing():
    """Every process restarts in turn (a configuration change) while a room is busy."""
    roll_under_a_busy_room(ROLL_COMMAND, per_transport=3)


NODE_DIR = os.environ.get("WSK_VERIFY_NODE_DIR", "")


def node_client(module: str, transports: str, seconds: int = 8) -> list[dict]:
    """Run one socket.io-client (Node) of tests/node against the cluster; its report."""
    import json

    script = os.path.join(NODE_DIR, "matrix.js")
    argv = ["node", script, module, URL, PATH, transports, "no", "verify-old", str(seconds)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.skipif(
    not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "socket.io-client-2")),
    reason="tests/node's socket.io-client versions are not installed ('make test' does)",
)
@pytest.mark.parametrize(
    ("module", "transports"),
    [
        ("socket.io-client-2", "websocket"),
        ("socket.io-client-2", "polling"),
        ("socket.io-client-2", "polling,websocket"),
        ("socket.io-client", "polling"),
    ],
    ids=["2.x-websocket", "2.x-polling", "2.x-upgrade", "4.x-polling-without-cookies"],
)
def test_old_and_cookieless_clients_are_served_through_haproxy(module, transports):
    """socket.io-client 2.x (Engine.IO 3), and 4.x polling with no cookie kept (sid routing)."""
    lines = node_client(module, transports)
    seen = {line["what"] for line in lines}
    assert {"connect", "whoami", "join"} <= seen, lines[:5]
    assert "disconnect" not in seen and "connect_error" not in seen, lines
    beating = {line["data"]["node"] for line in lines if line["what"] == "okok"}
    assert beating >= PROCESSES, f"heartbeats from {sorted(beating)}"
