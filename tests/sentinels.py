"""A primary, its replica and three sentinels on loopback, with the redis role's ACL users.

The users and what each may run come from the redis role itself (its defaults and
vars), so that these tests prove the role's lists are enough: the nodes' user on
the data nodes and on the sentinels, and the replication user of the replicas and
the sentinels.
"""

from __future__ import annotations

from pathlib import Path

import redis
import yaml

from testkit.procs import LOOPBACK, Process, free_port, require, wait_until

ROLE = Path(__file__).resolve().parent.parent / "roles" / "redis"
ADMIN_PASSWORD = "admin-secret"
NODE_USER, NODE_PASSWORD = "wsk", "node-secret"
REPLICATION_USER, REPLICATION_PASSWORD = "wsk-replication", "replication-secret"
SERVICE = "wsk"
QUORUM = 2
DOWN_AFTER_MS = 1000


def _role(path: str) -> dict:
    return yaml.safe_load((ROLE / path).read_text())


def data_node_users() -> str:
    """The data nodes' ACL file, as the redis role writes it (plain passwords here)."""
    defaults, role_vars = _role("defaults/main.yml"), _role("vars/main.yml")
    node = " ".join(
        ["resetchannels", "resetkeys"]
        + [f"~{p}" for p in defaults["redis_node_key_patterns"]]
        + ["-@all"]
        + [f"+{c}" for c in defaults["redis_node_commands"]]
    )
    replication = " ".join(
        ["resetchannels", "&__sentinel__:hello", "resetkeys", "-@all"]
        + [f"+{c}" for c in role_vars["__redis_replication_commands"]]
    )
    return (
        f"user default on >{ADMIN_PASSWORD} ~* &* +@all\n"
        f"user {NODE_USER} on >{NODE_PASSWORD} {node}\n"
        f"user {REPLICATION_USER} on >{REPLICATION_PASSWORD} {replication}\n"
    )


def sentinel_users() -> str:
    """The sentinels' users, as the redis role writes them into sentinel.conf."""
    asks = " ".join(f"+{c}" for c in _role("vars/main.yml")["__redis_sentinel_node_commands"])
    return (
        f"user default on >{ADMIN_PASSWORD} ~* &* +@all\n"
        f"user {REPLICATION_USER} on >{REPLICATION_PASSWORD} +@all\n"
        f"user {NODE_USER} on >{NODE_PASSWORD} -@all {asks}\n"
    )


def ask(port: int, *command: str, user: str = "default", password: str = ADMIN_PASSWORD):
    """One command to the Redis or sentinel on ``port``, as ``user``; its answer."""
    client = redis.Redis(LOOPBACK, port, username=user, password=password, socket_timeout=2)
    try:
        return client.execute_command(*command)
    finally:
        client.close()


def answers(port: int) -> bool:
    try:
        return bool(ask(port, "PING"))
    except redis.RedisError:
        return False


class DataNode(Process):
    """A redis-server with the role's users, a primary or a replica of ``primary``."""

    def __init__(self, workdir: Path, name: str, primary: DataNode | None = None) -> None:
        super().__init__(name, workdir)
        self.port = free_port()
        self.dir = workdir / name
        self.primary = primary

    def start(self) -> DataNode:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "users.acl").write_text(data_node_users())
        config = [
            f"bind {LOOPBACK}",
            f"port {self.port}",
            f"dir {self.dir}",
            'save ""',
            "appendonly no",
            f"aclfile {self.dir / 'users.acl'}",
            f"masteruser {REPLICATION_USER}",
            f"masterauth {REPLICATION_PASSWORD}",
        ]
        if self.primary is not None:
            config.append(f"replicaof {LOOPBACK} {self.primary.port}")
        (self.dir / "redis.conf").write_text("\n".join(config) + "\n")
        self.spawn([require("redis-server"), str(self.dir / "redis.conf")])
        wait_until(lambda: answers(self.port), 10, what=f"{self.name} to answer")
        return self


class Sentinel(Process):
    """A redis-server --sentinel watching ``primary`` as the role sets one up."""

    def __init__(self, workdir: Path, name: str, primary: DataNode) -> None:
        super().__init__(name, workdir)
        self.port = free_port()
        self.dir = workdir / name
        self.primary = primary

    def start(self) -> Sentinel:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = [
            f"bind {LOOPBACK}",
            f"port {self.port}",
            f"dir {self.dir}",
            sentinel_users(),
            f"sentinel sentinel-user {REPLICATION_USER}",
            f"sentinel sentinel-pass {REPLICATION_PASSWORD}",
            f"sentinel monitor {SERVICE} {LOOPBACK} {self.primary.port} {QUORUM}",
            f"sentinel auth-user {SERVICE} {REPLICATION_USER}",
            f"sentinel auth-pass {SERVICE} {REPLICATION_PASSWORD}",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} 10000",
        ]
        (self.dir / "sentinel.conf").write_text("\n".join(config) + "\n")
        self.spawn([require("redis-server"), str(self.dir / "sentinel.conf"), "--sentinel"])
        wait_until(lambda: answers(self.port), 10, what=f"{self.name} to answer")
        return self

    def primary_port(self) -> int | None:
        """The port of the primary this sentinel names now."""
        try:
            answer = ask(self.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        except redis.RedisError:
            return None
        return int(answer[1]) if answer else None


class SentinelGroup:
    """The primary, one replica and three sentinels; stopped together."""

    def __init__(self, workdir: Path) -> None:
        self.primary = DataNode(workdir, "primary")
        self.replica = DataNode(workdir, "replica", self.primary)
        self.sentinels = [Sentinel(workdir, f"sentinel{i}", self.primary) for i in (1, 2, 3)]

    def start(self) -> SentinelGroup:
        self.primary.start()
        self.replica.start()
        for sentinel in self.sentinels:
            sentinel.start()

        def ready() -> bool:
            return ask(self.replica.port, "INFO", "replication").get("master_link_status") == "up"

        wait_until(ready, 15, what="the replica to sync")
        # every sentinel knows the two others, so that two may elect a leader
        wait_until(
            lambda: all(
                len(ask(s.port, "SENTINEL", "SENTINELS", SERVICE)) == 2 for s in self.sentinels
            ),
            20,
            what="the sentinels to know each other",
        )
        return self

    def url(self, user: str = NODE_USER, password: str = NODE_PASSWORD) -> str:
        hosts = ",".join(f"{LOOPBACK}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{user}:{password}@{hosts}/{SERVICE}/0"

    def stop(self) -> None:
        for process in [*self.sentinels, self.replica, self.primary]:
            process.stop()

    def logs(self) -> str:
        return "\n".join(
            f"----- {p.name}\n{p.log()[-3000:]}"
            for p in [self.primary, self.replica, *self.sentinels]
        )
