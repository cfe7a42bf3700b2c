"""The Redis primary's host goes away under live clients: Sentinel promotes a replica, the
nodes follow it without a restart, and no acknowledged publish is lost.

Molecule's verify.yml runs this file from the host after the ha cluster has converged;
every value comes from the environment:

    WSK_VERIFY_URL              HAProxy's plain public side, e.g. http://127.0.0.1:8080
    WSK_VERIFY_PATH             public Socket.IO path prefix, e.g. /wsk
    WSK_VERIFY_NODE_DIR         the project's tests/node (socket.io-client 4)
    WSK_VERIFY_APP_HOSTS        the wsk hosts, comma-separated
    WSK_VERIFY_REDIS_HOSTS      each Redis container as name=address, comma-separated
    WSK_VERIFY_REDIS_PASSWORD   the Redis administrator's password (the sentinels' default user)
    WSK_VERIFY_SENTINEL_PORT    the sentinels' port and the name of the primary
    WSK_VERIFY_SENTINEL_SERVICE
    WSK_VERIFY_STATUS_COMMAND   optional: runs playbooks/status.yml

The clients are tests/node's socket.io-client (tests/clients.py's NodeClient), over
websocket, long-polling and upgrading, with connection-state recovery on (the nodes'
default): each publishes with an acknowledgement, and every client must receive every
publish that was acknowledged.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

TESTS = Path(os.environ.get("WSK_VERIFY_NODE_DIR", "")).parent
sys.path[:0] = [str(TESTS), str(TESTS.parent)]  # tests/ and the project, for its testkit
from clients import NodeClient  # noqa: E402 - tests/clients.py, shared with pytest

URL = os.environ.get("WSK_VERIFY_URL", "http://127.0.0.1:8080")
PATH = os.environ.get("WSK_VERIFY_PATH", "/wsk")
APP_HOSTS = [h for h in os.environ.get("WSK_VERIFY_APP_HOSTS", "").split(",") if h]
REDIS = dict(
    pair.split("=", 1) for pair in os.environ.get("WSK_VERIFY_REDIS_HOSTS", "").split(",") if pair
)
PASSWORD = os.environ.get("WSK_VERIFY_REDIS_PASSWORD", "")
SENTINEL_PORT = os.environ.get("WSK_VERIFY_SENTINEL_PORT", "26379")
SERVICE = os.environ.get("WSK_VERIFY_SENTINEL_SERVICE", "wsk")
STATUS_COMMAND = os.environ.get("WSK_VERIFY_STATUS_COMMAND", "")

TRANSPORTS = ["websocket", "polling", "polling,websocket"]
CLIENTS_PER_TRANSPORT = 2
# what the issue asks of a failover: the relay resumes within this
RESUME_WITHIN = 10.0
PUBLISH_EVERY = 0.1


def primary_of(container: str) -> str | None:
    """The primary's address, as the sentinel in ``container`` names it."""
    result = subprocess.run(
        [
            *("docker", "exec", "-e", f"REDISCLI_AUTH={PASSWORD}", container, "redis-cli"),
            *("--no-auth-warning", "-p", SENTINEL_PORT, "--user", "default"),
            *("sentinel", "get-master-addr-by-name", SERVICE),
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    lines = result.stdout.split()
    return lines[0] if result.returncode == 0 and len(lines) == 2 else None


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.1)


def host_of(client: NodeClient) -> str:
    return client.nodes()[-1].rsplit(":", 1)[0]


@pytest.mark.skipif(not STATUS_COMMAND, reason="WSK_VERIFY_STATUS_COMMAND is not set")
def test_the_status_table_shows_each_sentinel_naming_the_primary():
    # runs before the failover: afterwards the old primary's container is stopped
    primary = wait_for(lambda: primary_of(next(iter(REDIS))), 30, "a primary")
    result = subprocess.run(
        shlex.split(STATUS_COMMAND), capture_output=True, text=True, timeout=300
    )
    output = f"{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    assert result.returncode == 0, f"status.yml failed:\n{output}"
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)  # Ansible's colours
    rows = {
        cells[0]: cells
        for line in plain.splitlines()
        if "|" in line
        for cells in [[cell.strip() for cell in line.strip().strip('",').split("|")]]
    }
    print("\n".join(" | ".join(cells) for cells in rows.values()))
    for name, address in REDIS.items():
        assert name in rows, f"{name} not in the table:\n{plain[-3000:]}"
        role, _, view = rows[name][1:4]
        assert role == ("master" if address == primary else "slave"), rows[name]
        assert view.startswith(f"{primary}:"), rows[name]
        assert f"{len(REDIS) - 1} replicas, {len(REDIS)} sentinels" in view, rows[name]


def test_a_failover_of_the_primary_loses_no_acknowledged_publish():
    by_address = {address: name for name, address in REDIS.items()}
    primary = by_address[wait_for(lambda: primary_of(next(iter(REDIS))), 30, "a primary")]
    survivors = [name for name in REDIS if name != primary]

    clients = [
        NodeClient(URL, transports, seconds=300, path=PATH)
        for transports in TRANSPORTS
        for _ in range(CLIENTS_PER_TRANSPORT)
    ]
    try:
        wait_for(lambda: all(c.nodes() for c in clients), 30, "every client's whoami")
        hosts = {host_of(c) for c in clients}
        assert hosts == set(APP_HOSTS), hosts  # leastconn spreads them over both hosts

        stop = threading.Event()
        sent = itertools.count()

        def publish() -> None:
            for client in itertools.cycle(clients):
                if stop.is_set():
                    return
                client.send("publish", {"data": f"p-{next(sent)}"})
                time.sleep(PUBLISH_EVERY)

        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        time.sleep(3)  # publishes before the failover

        # systemd as PID 1 ignores docker's SIGTERM: docker stop kills the container after
        # its timeout; the primary is gone once the command returns
        subprocess.run(["docker", "stop", primary], check=True, capture_output=True, timeout=60)
        stopped_at = time.time() * 1000

        new_primary = wait_for(
            lambda: (a := primary_of(survivors[0])) and by_address.get(a) != primary and a,
            60,
            "the sentinels to promote a replica",
        )
        failover_s = (time.time() * 1000 - stopped_at) / 1000

        # the relay resumes: a publish acknowledged after the stop on one host reaches
        # the clients of the other
        def resumed_at() -> float | None:
            for sender in clients:
                for line in list(sender.lines):
                    if line["what"] != "ack" or line["data"]["event"] != "publish":
                        continue
                    answer = line["data"]["answer"]
                    if line["t"] <= stopped_at or not answer or "error" in answer:
                        continue
                    data = line["data"]["data"]["data"]
                    for other in clients:
                        if host_of(other) == host_of(sender):
                            continue
                        for got in list(other.lines):
                            if (
                                got["what"] == "event"
                                and got["data"]["args"][0].get("data") == data
                            ):
                                return (got["t"] - stopped_at) / 1000
            return None

        resume_s = wait_for(resumed_at, 30, "a publish to cross hosts again")
        time.sleep(3)  # publishes after the failover
        stop.set()
        publisher.join(10)

        def acknowledged(client: NodeClient) -> list[str]:
            return [
                line["data"]["data"]["data"]
                for line in list(client.lines)
                if line["what"] == "ack"
                and line["data"]["event"] == "publish"
                and "error" not in (line["data"]["answer"] or {"error": None})
            ]

        def refused(client: NodeClient) -> int:
            return sum(
                1
                for line in list(client.lines)
                if line["what"] == "ack"
                and line["data"]["event"] == "publish"
                and "error" in (line["data"]["answer"] or {"error": None})
            )

        acked = {data for client in clients for data in acknowledged(client)}

        def everyone_has_everything() -> bool:
            return all(
                acked <= {m.get("data") for m in client.events("message")} for client in clients
            )

        try:
            wait_for(everyone_has_everything, 30, "every acknowledged publish at every client")
        finally:
            missing = {
                i: len(acked - {m.get("data") for m in c.events("message")})
                for i, c in enumerate(clients)
            }
            print(
                f"primary {primary} stopped; {by_address[new_primary]} promoted after "
                f"{failover_s:.1f} s; relay across hosts resumed after {resume_s:.1f} s; "
                f"{len(acked)} publishes acknowledged, "
                f"{sum(refused(c) for c in clients)} answered with an error meanwhile; "
                f"missing per client {missing}; disconnects "
                f"{sum(1 for c in clients for line in c.lines if line['what'] == 'disconnect')}"
            )
        assert resume_s <= RESUME_WITHIN, resume_s
        assert all(c.connected() for c in clients)
    finally:
        for client in clients:
            client.stop()
