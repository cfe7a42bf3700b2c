"""The redis role's ACL machinery against a real redis-server: its module and its validator.

The module (roles/redis/library/redis_acl.py) runs here as Ansible runs it on a
host: a Python process given its arguments as JSON. The validator is the role's
own shell command, read from roles/redis/vars/main.yml.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from processes import Process, require, wait_until

ROLE = Path(__file__).parent.parent / "roles" / "redis"
MODULE = ROLE / "library" / "redis_acl.py"


def rules(passwords: list[str], *more: str) -> list[str]:
    hashes = ["#" + hashlib.sha256(p.encode()).hexdigest() for p in passwords]
    return ["reset", "on", *hashes, *more]


def admin(passwords: list[str]) -> dict:
    return {"name": "default", "rules": rules(passwords, "~*", "&*", "+@all")}


def node(passwords: list[str]) -> dict:
    more = ("resetchannels", "&wsk", "resetkeys", "-@all", "+ping", "+publish", "+subscribe")
    return {"name": "wsk", "rules": rules(passwords, *more)}


class SocketRedis(Process):
    """redis-server on a unix socket only, its default user with a password."""

    def __init__(self, workdir: Path, password: str) -> None:
        super().__init__("redis-acl", workdir)
        self.socket = str(workdir / "redis.sock")
        self.password = password

    def start(self) -> SocketRedis:
        argv = [require("redis-server"), "--port", "0", "--unixsocket", self.socket]
        argv += ["--save", "", "--appendonly", "no", "--requirepass", self.password]
        self.spawn(argv)
        wait_until(lambda: Path(self.socket).exists(), 10, what="redis-server's socket")
        return self

    def client(self, user: str, password: str) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket, username=user, password=password)


@pytest.fixture
def server(tmp_path):
    server = SocketRedis(tmp_path, "admin-1").start()
    yield server
    server.stop()


def apply(server: SocketRedis, passwords: list[str], users: list[dict]) -> dict:
    """Run the module once; its JSON answer."""
    arguments = {"socket": server.socket, "login_passwords": passwords, "users": users}
    done = subprocess.run(
        [sys.executable, str(MODULE)],
        input=json.dumps({"ANSIBLE_MODULE_ARGS": arguments}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return json.loads(done.stdout)


def test_the_module_sets_users_idempotently_and_deletes_the_others(server):
    with server.client("default", "admin-1") as root:
        root.execute_command("ACL", "SETUSER", "stray", "on", ">x", "+@all")
    users = [admin(["admin-1"]), node(["node-1"])]
    first = apply(server, ["admin-1"], users)
    assert first["changed"] is True, first
    assert apply(server, ["admin-1"], users)["changed"] is False
    names = sorted(line.split()[1] for line in first["users"])
    assert names == ["default", "wsk"]
    assert not any("node-1" in line or "admin-1" in line for line in first["users"])
    nodes = server.client("wsk", "node-1")
    assert nodes.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        nodes.execute_command("FLUSHALL")
    with pytest.raises(redis.exceptions.NoPermissionError):
        nodes.publish("not-wsk", "x")


def test_rotating_the_nodes_password_keeps_their_subscription(server):
    apply(server, ["admin-1"], [admin(["admin-1"]), node(["node-1"])])
    subscriber = server.client("wsk", "node-1")
    pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("wsk")
    publisher = server.client("wsk", "node-1")
    assert publisher.ping()  # connected (redis-py connects on first use) with node-1
    # step 1: the new password beside the old one; step 3: the old one gone
    apply(server, ["admin-1"], [admin(["admin-1"]), node(["node-2", "node-1"])])
    assert server.client("wsk", "node-2").ping()
    apply(server, ["admin-1"], [admin(["admin-1"]), node(["node-2"])])
    with pytest.raises(redis.exceptions.AuthenticationError):
        server.client("wsk", "node-1").ping()
    # the connections made with the old password were never cut
    assert publisher.publish("wsk", "still here") == 1
    deadline = time.monotonic() + 5
    message = None
    while message is None and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
    assert message is not None and message["data"] == b"still here"
    pubsub.close()


def test_the_administrators_password_rotates_with_the_old_one_to_log_in(server):
    # the running Redis knows admin-1 only; the role gives the new one first
    answer = apply(server, ["admin-2", "admin-1"], [admin(["admin-2"]), node(["node-1"])])
    assert answer["changed"] is True, answer
    assert server.client("default", "admin-2").ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        server.client("default", "admin-1").ping()


def test_the_module_says_so_when_no_password_logs_in(server):
    answer = apply(server, ["wrong", "also-wrong"], [admin(["x"])])
    assert answer.get("failed") is True
    assert "none of the 2 passwords" in answer["msg"]


def validate(acl_file: Path) -> subprocess.CompletedProcess:
    """The role's own check of a candidate ACL file, as Ansible's validate runs it."""
    command = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__redis_validate_acl"]
    return subprocess.run(
        command.replace("%s", str(acl_file)).replace("%%", "%"),
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_acl_file_validator_passes_a_good_file_and_names_the_fault_of_a_bad_one(tmp_path):
    good = tmp_path / "good.acl"
    good.write_text(
        "".join(f"user {u['name']} {' '.join(u['rules'])}\n" for u in [admin(["a"]), node(["n"])])
    )
    assert validate(good).returncode == 0, validate(good).stderr
    bad = tmp_path / "bad.acl"
    bad.write_text("user wsk reset on +no-such-command\n")
    refused = validate(bad)
    assert refused.returncode != 0
    assert "no-such-command" in refused.stderr
