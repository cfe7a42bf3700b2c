"""Node loss, rolling restarts and the status table, on the demo cluster, from the host.

verify.yml runs this file last: it kills, stops and cuts off the app containers, and
brings each back (same name, same address) before the next test. Besides the variables
of test_cluster.py:

    WSK_VERIFY_NODE_DIR         the project's tests/node (socket.io-client 4.8, client.js)
    WSK_VERIFY_DOCKER           the docker client (default: docker)
    WSK_VERIFY_NETWORK          the containers' Docker network
    WSK_VERIFY_LB               the HAProxy container, whose log a failure shows (default: lb1)
    WSK_VERIFY_ROLLING_COMMAND  optional: runs playbooks/rolling-restart.yml
    WSK_VERIFY_STATUS_COMMAND   optional: runs playbooks/status.yml

A client's reconnect gap is the time from the moment it stopped being served (the kill,
the cut, or the close it saw) to its next connect, as socket.io-client reports it. The
goal is 3 s at the 99th percentile; each test prints what it measured (docs/operations.md
has the figures) and asserts a bound twice as long, which a loaded machine will not reach
but HAProxy's former settings (5 s connect timeout retried, 2 s checks, fall 3) did.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import pytest
import requests
from test_cluster import (
    PATH,
    PROCESSES,
    STATS_AUTH,
    STATS_URL,
    URL,
    roll_under_a_busy_room,
    wait_for,
)

NODE_DIR = os.environ.get("WSK_VERIFY_NODE_DIR", "")
DOCKER = os.environ.get("WSK_VERIFY_DOCKER", "docker")
NETWORK = os.environ.get("WSK_VERIFY_NETWORK", "wsk-molecule")
ROLLING_COMMAND = os.environ.get("WSK_VERIFY_ROLLING_COMMAND", "")
STATUS_COMMAND = os.environ.get("WSK_VERIFY_STATUS_COMMAND", "")
TRANSPORTS = ["websocket", "polling", "polling,websocket"]
BOUND_MS = 6000
VICTIM = "app2"
LB = os.environ.get("WSK_VERIFY_LB", "lb1")

needs_node = pytest.mark.skipif(
    not os.path.isfile(os.path.join(NODE_DIR, "client.js")),
    reason="WSK_VERIFY_NODE_DIR has no client.js",
)


def docker(*args: str) -> str:
    return subprocess.run(
        [DOCKER, *args], check=True, capture_output=True, text=True, timeout=120
    ).stdout.strip()


def server_states() -> dict[str, str]:
    """HAProxy's status of every wsk server, from its stats page."""
    rows = requests.get(f"{STATS_URL}/stats;csv", auth=STATS_AUTH, timeout=5).text.splitlines()
    return {
        row.split(",")[1]: row.split(",")[17]
        for row in rows
        if row.startswith("wsk,") and row.split(",")[1] not in ("BACKEND", "FRONTEND")
    }


def all_up() -> bool:
    try:
        states = server_states()
    except requests.RequestException:
        return False
    return {p.replace(":", "-") for p in PROCESSES} <= {s for s, st in states.items() if st == "UP"}


class NodeClient:
    """tests/node/client.js: socket.io-client 4.8, reporting each connect and whoami."""

    def __init__(self, transports: str) -> None:
        argv = ["node", os.path.join(NODE_DIR, "client.js"), URL, PATH, transports, "300"]
        self.transports = transports
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def seen(self, what: str) -> list[dict]:
        return [line for line in list(self.lines) if line["what"] == what]

    def nodes(self) -> list[str]:
        return [line["data"]["node"] for line in self.seen("whoami")]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@contextmanager
def population(per_transport: int = 4):
    """Node clients of every transport, connected one at a time (leastconn spreads them)."""
    clients: list[NodeClient] = []
    try:
        for transports in TRANSPORTS:
            for _ in range(per_transport):
                client = NodeClient(transports)
                clients.append(client)
                wait_for(lambda c=client: bool(c.nodes()), 20, f"a {transports} client")
        yield clients
    finally:
        for client in clients:
            client.stop()


def reconnect_gaps(
    lose: Callable[[], None], restore: Callable[[], None], on: Callable[[str], bool], instant: bool
) -> list[float]:
    """Lose the processes that ``on`` names; the reconnect gap of each of their clients, in ms."""
    wait_for(all_up, 60, "every wsk server UP in HAProxy")
    with population() as clients:
        movers = [c for c in clients if on(c.nodes()[-1])]
        assert {c.transports for c in movers} == set(TRANSPORTS), [c.transports for c in movers]
        lost_at = time.time() * 1000
        try:
            lose()

            def back(client: NodeClient) -> bool:
                return len(client.seen("connect")) >= 2 and len(client.nodes()) >= 2

            wait_for(lambda: all(back(c) for c in movers), 60, "the lost clients back")
            gaps = []
            for client in movers:
                assert not on(client.nodes()[-1]), f"{client.transports} came back to a lost node"
                reconnect = client.seen("connect")[1]["t"]
                closed = client.seen("disconnect")[0]["t"]
                gaps.append(reconnect - (min(lost_at, closed) if instant else closed))
            for client in clients:
                if client not in movers:
                    assert len(client.seen("connect")) == 1, f"{client.transports} was moved too"
        finally:
            restore()
    wait_for(all_up, 90, "every wsk server UP in HAProxy again")
    return gaps


def report(what: str, gaps: list[float]) -> None:
    ordered = sorted(round(g) for g in gaps)
    print(
        f"{what}: {len(gaps)} clients, reconnect gap median {statistics.median(ordered):.0f} ms,"
        f" max {ordered[-1]} ms: {ordered}"
    )
    assert ordered[-1] < BOUND_MS, ordered


def on_victim(node: str) -> bool:
    return node.startswith(f"{VICTIM}:")


def server_changes(since: str) -> list[str]:
    """HAProxy's log lines of servers changing state since ``since`` (its clock)."""
    log = docker("exec", LB, "journalctl", "-u", "haproxy.service", "--since", since, "-o", "cat")
    # each line is there twice: as a warning on stderr, and in the log on stdout
    return [line for line in log.splitlines() if line.startswith("Server wsk/")]


def address_of(container: str) -> str:
    return docker(
        "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container
    )


@needs_node
def test_the_clients_of_a_process_killed_with_sigkill_reconnect_within_seconds():
    process = sorted(p for p in PROCESSES if on_victim(p))[0]
    port = process.rsplit(":", 1)[1]

    def lose() -> None:
        docker("exec", VICTIM, "systemctl", "kill", "--signal=KILL", f"wsk@{port}.service")

    gaps = reconnect_gaps(lose, lambda: None, lambda node: node == process, instant=True)
    report(f"kill -9 of {process}", gaps)


@needs_node
def test_the_clients_of_a_host_killed_reconnect_within_seconds():
    address = address_of(VICTIM)
    gaps = reconnect_gaps(
        lambda: docker("kill", VICTIM), lambda: docker("start", VICTIM), on_victim, instant=True
    )
    assert address_of(VICTIM) == address
    report(f"docker kill {VICTIM}", gaps)


@needs_node
def test_the_clients_of_a_host_stopped_reconnect_within_seconds():
    """docker stop: systemd (PID 1) takes SIGTERM for a re-execution; the host dies 10 s later."""
    address = address_of(VICTIM)
    gaps = reconnect_gaps(
        lambda: docker("stop", VICTIM), lambda: docker("start", VICTIM), on_victim, instant=False
    )
    assert address_of(VICTIM) == address
    report(f"docker stop {VICTIM}", gaps)


@needs_node
def test_the_clients_of_a_host_cut_off_the_network_reconnect_within_seconds():
    """No FIN, no RST: HAProxy's checks time out, and shutting its sessions frees the clients."""
    address = address_of(VICTIM)
    gaps = reconnect_gaps(
        lambda: docker("network", "disconnect", NETWORK, VICTIM),
        lambda: docker("network", "connect", NETWORK, VICTIM),
        on_victim,
        instant=True,
    )
    # HAProxy knows the nodes by address: the container must come back with its own
    assert address_of(VICTIM) == address, "the container came back with another address"
    report(f"docker network disconnect {VICTIM}", gaps)


# a whole playbook run against four containers: slower than the suite's 180 s on a busy host
@pytest.mark.timeout(600)
@pytest.mark.skipif(not ROLLING_COMMAND, reason="WSK_VERIFY_ROLLING_COMMAND is not set")
def test_a_rolling_restart_disconnects_each_client_once_at_most_and_loses_nothing():
    """playbooks/rolling-restart.yml under a busy room: once at most, in order, nothing missed."""
    wait_for(all_up, 60, "every wsk server UP in HAProxy")
    since = docker("exec", LB, "date", "+%Y-%m-%d %H:%M:%S")
    clients, _ = roll_under_a_busy_room(ROLLING_COMMAND, per_transport=4)
    hit_twice = [f"{p.transports}: {p.events}" for p in clients if p.disconnects > 1]
    assert not hit_twice, "\n".join([*hit_twice, "HAProxy:", *server_changes(since)])
    assert all_up()


@pytest.mark.skipif(not STATUS_COMMAND, reason="WSK_VERIFY_STATUS_COMMAND is not set")
def test_the_status_playbook_prints_one_table_naming_every_process_up():
    wait_for(all_up, 60, "every wsk server UP in HAProxy")
    result = subprocess.run(
        shlex.split(STATUS_COMMAND), capture_output=True, text=True, timeout=300
    )
    output = f"{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, f"status.yml failed:\n{output}"
    print(result.stdout[-3000:])
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)  # Ansible's colours
    rows = [line.strip().strip('",') for line in plain.splitlines() if "|" in line]
    for process in PROCESSES:
        server = process.replace(":", "-")
        row = next((r for r in rows if r.split("|")[0].strip() == server), None)
        assert row is not None, f"{server} not in the table:\n{result.stdout[-3000:]}"
        cells = [cell.strip() for cell in row.split("|")]
        assert cells[1] == "UP" and cells[-3] == "ok" and cells[-2] == "up", cells
    redis_rows = [r for r in rows if r.split("|")[0].strip().startswith("redis1")]
    assert redis_rows and redis_rows[0].split("|")[1].strip() == "master", rows
