"""The processes a benchmark runs: redis-server, the nodes of each stack, haproxy.

Everything listens on free loopback ports; every process is started in a session
of its own and stopped by its own id.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testkit import haproxy
from testkit.procs import (  # noqa: F401 - the benchmark's modules import these from here
    CLOCK_TICKS,
    LOOPBACK,
    Missing,
    Process,
    RedisServer,
    TimedOut,
    Usage,
    accepts,
    free_port,
    require,
    usage,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = Path(__file__).resolve().parent / "node"
STACKS = ("wsk", "node")
# a line of a node's log that says something went wrong
PROBLEM = re.compile(r"ERROR|CRITICAL|Traceback|[Ee]rror:|Cannot |^redis: ")


class BenchError(RuntimeError):
    """Something the benchmark needs is missing or broke."""


# what the shared process helpers raise, which the benchmark reports as its own errors
FAILURES = (BenchError, TimedOut, Missing)


def get_json(url: str, timeout: float = 5) -> tuple[int, dict[str, Any]]:
    """GET ``url``; its status and JSON body (empty on errors)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


@dataclass(frozen=True)
class NodeSettings:
    """What both stacks' nodes are given alike."""

    ping_interval: float
    ping_timeout: float
    heartbeat_interval: float
    max_payload: int = 1_000_000
    backlog: int = 1024
    wsk_log_level: str = "warning"


class ServerNode(Process):
    """One node of a stack: a ``wsk-server`` or the Node reference ``server.js``."""

    def __init__(
        self,
        stack: str,
        name: str,
        workdir: Path,
        redis_url: str,
        settings: NodeSettings,
        tag: str = "",
    ) -> None:
        super().__init__(f"{tag}-{stack}-{name}" if tag else f"{stack}-{name}", workdir)
        self.stack = stack
        self.node_name = name
        self.port = free_port()
        common = {
            "host": LOOPBACK,
            "port": self.port,
            "node-name": name,
            "redis-url": redis_url,
            "channel": f"bench-{stack}",
            "heartbeat-interval": settings.heartbeat_interval,
            "heartbeat-jitter": 0,
            "ping-interval": settings.ping_interval,
            "ping-timeout": settings.ping_timeout,
            "max-payload": settings.max_payload,
            "backlog": settings.backlog,
        }
        if stack == "wsk":
            wsk_server = Path(sys.executable).parent / "wsk-server"
            if not wsk_server.exists():
                raise BenchError(f"{wsk_server} is missing: install the project in this venv")
            common.update({"log-level": settings.wsk_log_level, "max-connections": 15_000})
            self.argv = [str(wsk_server)]
        else:
            if not (NODE_DIR / "node_modules").is_dir():
                raise BenchError(f"run 'npm ci --prefix {NODE_DIR}' first")
            self.argv = [require("node"), str(NODE_DIR / "server.js")]
        for key, value in common.items():
            self.argv.append(f"--{key}={value}")

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> ServerNode:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSK_")}
        self.spawn(self.argv, env)
        return self

    def wait_healthy(self) -> None:
        def healthy() -> bool:
            if not self.running:
                raise BenchError(f"{self.name} exited:\n{self.log_tail()}")
            return self.health()[0] == 200

        wait_until(healthy, 20, what=f"{self.name} to be healthy")

    def health(self) -> tuple[int, dict[str, Any]]:
        return get_json(self.url + "/healthz")

    def clients(self) -> int:
        """How many Engine.IO sessions the node holds, by its own /healthz."""
        return int(self.health()[1].get("clients", -1))


class HAProxy:
    """HAProxy in front of a stack's nodes: sticky cookie, /wsk -> / rewrite, leastconn.

    ``processes`` copies of the same configuration share the port through
    SO_REUSEPORT (HAProxy's default), the kernel spreading connections between
    them: one process holds at most ``maxconn`` connections, two descriptors each.
    """

    COOKIE = "WSKID"

    def __init__(
        self, workdir: Path, nodes: list[ServerNode], maxconn: int, processes: int = 1
    ) -> None:
        self.port = free_port()
        self.config_path = workdir / f"haproxy-{nodes[0].stack}.cfg"
        self.processes = [
            Process(f"haproxy-{nodes[0].stack}-{i}", workdir) for i in range(processes)
        ]
        self.nodes = nodes
        servers = [haproxy.Server(node.node_name, LOOPBACK, node.port) for node in nodes]
        self.config_text = haproxy.config(
            f"{LOOPBACK}:{self.port}",
            servers,
            cookie=self.COOKIE,
            maxconn=maxconn,
            connect_timeout="5s",
            check="inter 1s fall 2 rise 2",
            # a node refusing connections under the benchmark's load stays in
            observe="",
        )
        self.config_path.write_text(self.config_text)

    @property
    def url(self) -> str:
        """The public URL clients use, Socket.IO at /wsk."""
        return f"http://{LOOPBACK}:{self.port}/wsk"

    def cookie_for(self, node: ServerNode) -> str:
        """The cookie that sends a client to ``node``."""
        return f"{self.COOKIE}={node.node_name}"

    def start(self) -> HAProxy:
        haproxy = require("haproxy")
        check = subprocess.run(  # noqa: S603
            [haproxy, "-c", "-q", "-f", str(self.config_path)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise BenchError(f"haproxy refused its configuration: {check.stdout}{check.stderr}")
        for process in self.processes:
            process.spawn([haproxy, "-db", "-f", str(self.config_path)])
        wait_until(lambda: accepts(self.port), 10, what="haproxy to listen")
        wait_until(self.routes_to_every_node, 20, what="haproxy to see every node up")
        return self

    def routes_to_every_node(self) -> bool:
        for process in self.processes:
            if not process.running:
                raise BenchError(f"{process.name} exited:\n{process.log_tail()}")
        seen = set()
        for _ in range(4 * len(self.nodes)):
            status, body = get_json(f"http://{LOOPBACK}:{self.port}/wsk/healthz", timeout=2)
            if status == 200:
                seen.add(body.get("node"))
        return seen >= {node.node_name for node in self.nodes}

    def usage(self) -> Usage:
        """CPU and RSS of every HAProxy process, added up."""
        parts = [process.usage() for process in self.processes]
        return Usage(cpu=sum(p.cpu for p in parts), rss=sum(p.rss for p in parts))

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def descriptor_limit() -> tuple[int, int]:
    """This process' soft and hard limits on open files."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class Cluster:
    """One stack's nodes and their HAProxy, on a shared Redis; stopped together."""

    def __init__(
        self,
        stack: str,
        workdir: Path,
        redis: RedisServer,
        settings: NodeSettings,
        nodes: int,
        haproxy_maxconn: int,
        haproxy_processes: int = 1,
        tag: str = "",
    ) -> None:
        if stack not in STACKS:
            raise BenchError(f"unknown stack {stack!r}")
        self.stack = stack
        self.nodes = [
            ServerNode(stack, f"node{i}", workdir, redis.url, settings, tag)
            for i in range(1, nodes + 1)
        ]
        self.haproxy = HAProxy(workdir, self.nodes, haproxy_maxconn, haproxy_processes)

    def __enter__(self) -> Cluster:
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_healthy()
            self.haproxy.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.haproxy.stop()
        for node in self.nodes:
            node.stop()

    def log_problems(self) -> dict[str, Any]:
        """The error lines the nodes logged: how many, and the most frequent ones."""
        found: Counter[str] = Counter()
        for node in self.nodes:
            if not node.log_path.exists():
                continue
            for line in node.log_path.read_text(errors="replace").splitlines():
                if PROBLEM.search(line):
                    text = re.sub(r"^[\d-]+ [\d:,]+ ", "", line.strip())
                    found[f"{node.node_name}: " + re.sub(r"\d+", "#", text)[:160]] += 1
        return {"lines": sum(found.values()), "most_frequent": dict(found.most_common(5))}

    def usage(self) -> dict[str, Usage]:
        """CPU and RSS of each node and of HAProxy, by name."""
        result = {node.node_name: node.usage() for node in self.nodes}
        result["haproxy"] = self.haproxy.usage()
        return result
