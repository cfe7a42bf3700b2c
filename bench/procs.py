"""The processes a benchmark runs: redis-server, the nodes of each stack, haproxy.

Everything listens on free loopback ports; every process is started in a session
of its own and stopped by its own id.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
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

# The per-client guards of a wsk node (server/wsk/config.py), raised for the benchmark: one
# publisher sends thousands of events a second, far past --client-event-rate, and a receiver
# behind a failing W1 step queues more than a real client should. The benchmark measures
# throughput, not the guard; the refusal counters below prove that no guard was hit.
WSK_BENCH_LIMITS = {
    "client-event-rate": "0",
    "client-event-burst": "1000000",
    "client-queue-packets": "1000000",
    "client-queue-bytes": "1000000000",
    "client-max-rooms": "0",
    "max-post-packets": "100000",
    "max-connections": "15000",
}
# the counters of a wsk node's /metrics that count a refusal; each must stay at zero
REFUSALS = (
    "wsk_clients_dropped_total",
    "wsk_events_refused_total",
    "wsk_protocol_errors_total",
    "wsk_connections_refused_total",
    "wsk_auth_refused_total",
    "wsk_redis_publish_failures_total",
)
METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([-+0-9.eEinfINFaN]+)$")


def get_metrics(url: str, timeout: float = 5) -> dict[str, float]:
    """The samples of a Prometheus text page: ``name{labels}`` to value."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


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
        flags: dict[str, str] | None = None,
        channel: str = "",
    ) -> None:
        super().__init__(f"{tag}-{stack}-{name}" if tag else f"{stack}-{name}", workdir)
        self.stack = stack
        self.node_name = name
        self.port = free_port()
        common: dict[str, Any] = {
            "host": LOOPBACK,
            "port": self.port,
            "node-name": name,
            "redis-url": redis_url,
            "channel": channel or f"bench-{stack}",
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
            common.update({"log-level": settings.wsk_log_level, **WSK_BENCH_LIMITS})
            self.program = [str(wsk_server)]
        else:
            if not (NODE_DIR / "node_modules").is_dir():
                raise BenchError(f"run 'npm ci --prefix {NODE_DIR}' first")
            self.program = [require("node"), str(NODE_DIR / "server.js")]
        common.update(flags or {})
        self.options = common

    @property
    def argv(self) -> list[str]:
        self.options["port"] = self.port
        return self.program + [f"--{key}={value}" for key, value in self.options.items()]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> ServerNode:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSK_")}
        self.spawn(self.argv, env)
        return self

    def wait_healthy(self, attempts: int = 3) -> None:
        """Wait for /healthz; a port another process took meanwhile is changed, up to
        ``attempts`` times (other runs share the machine's free ports)."""

        def healthy() -> bool:
            if not self.running:
                raise BenchError(f"{self.name} exited:\n{self.log_tail()}")
            return self.health()[0] == 200

        for attempt in range(attempts):
            try:
                wait_until(healthy, 20, what=f"{self.name} to be healthy")
                return
            except BenchError:
                taken = "address already in use" in self.log_tail(500).lower()
                if not taken or attempt == attempts - 1:
                    raise
            self.port = free_port()
            self.start()

    def health(self) -> tuple[int, dict[str, Any]]:
        return get_json(self.url + "/healthz")

    def clients(self) -> int:
        """How many Engine.IO sessions the node holds, by its own /healthz."""
        return int(self.health()[1].get("clients", -1))

    def kill(self) -> None:
        """kill -9: the node dies without a word to its clients or Redis."""
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def metrics(self) -> dict[str, float]:
        """A wsk node's /metrics samples (the Node reference has none: empty)."""
        if self.stack != "wsk":
            return {}
        try:
            return get_metrics(self.url + "/metrics")
        except OSError as exc:
            raise BenchError(f"{self.name}: /metrics did not answer: {exc}") from exc

    def check_refusals(self, what: str) -> None:
        """Fail loudly when a wsk node refused anything: the benchmark must not hit a guard."""
        hit = {
            name: value
            for name, value in self.metrics().items()
            if name.split("{")[0] in REFUSALS and value
        }
        if hit:
            raise BenchError(
                f"{what}: {self.name} refused clients or events, so the figures measure a guard, "
                f"not throughput: {hit} (a run with --set wsk_log_level=info --keep-logs logs "
                "each refusal's reason; a limit is raised in bench/procs.py WSK_BENCH_LIMITS)"
            )


class HAProxy:
    """HAProxy in front of a stack's nodes: sticky cookie, /wsk -> / rewrite, leastconn.

    ``processes`` copies of the same configuration share the port through
    SO_REUSEPORT (HAProxy's default), the kernel spreading connections between
    them: one process holds at most ``maxconn`` connections, two descriptors each.
    """

    COOKIE = "WSKID"

    def __init__(
        self,
        workdir: Path,
        nodes: list[ServerNode],
        maxconn: int,
        processes: int = 1,
        name: str = "",
    ) -> None:
        self.port = free_port()
        name = name or nodes[0].stack
        self.config_path = workdir / f"haproxy-{name}.cfg"
        self.processes = [Process(f"haproxy-{name}-{i}", workdir) for i in range(processes)]
        self.nodes = nodes
        self.maxconn = maxconn

    def write_config(self) -> None:
        """The configuration, for the nodes' ports as they are now (written at start)."""
        servers = [haproxy.Server(node.node_name, LOOPBACK, node.port) for node in self.nodes]
        text = haproxy.config(
            f"{LOOPBACK}:{self.port}",
            servers,
            cookie=self.COOKIE,
            maxconn=self.maxconn,
            connect_timeout="5s",
            check="inter 1s fall 2 rise 2",
            # a node refusing connections under the benchmark's load stays in
            observe="",
        )
        self.config_path.write_text(text)

    @property
    def url(self) -> str:
        """The public URL clients use, Socket.IO at /wsk."""
        return f"http://{LOOPBACK}:{self.port}/wsk"

    def cookie_for(self, node: ServerNode) -> str:
        """The cookie that sends a client to ``node``."""
        return f"{self.COOKIE}={node.node_name}"

    def start(self) -> HAProxy:
        haproxy = require("haproxy")
        self.write_config()
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
        return Usage(
            cpu=sum(p.cpu for p in parts),
            rss=sum(p.rss for p in parts),
            system=sum(p.system for p in parts),
        )

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
        flags: dict[str, str] | None = None,
        variant: str = "",
    ) -> None:
        """``variant`` names a second cluster of the same stack (its own channel, own logs)."""
        if stack not in STACKS:
            raise BenchError(f"unknown stack {stack!r}")
        self.stack = stack
        self.variant = variant or stack
        prefix = f"{tag}-{self.variant}" if variant else tag
        channel = f"bench-{self.variant}"
        self.nodes = [
            ServerNode(stack, f"node{i}", workdir, redis.url, settings, prefix, flags, channel)
            for i in range(1, nodes + 1)
        ]
        self.haproxy = HAProxy(
            workdir, self.nodes, haproxy_maxconn, haproxy_processes, f"{tag}-{self.variant}"
        )

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

    def check_refusals(self, what: str) -> None:
        """Fail loudly when a running wsk node of the cluster refused anything."""
        for node in self.nodes:
            if node.running:
                node.check_refusals(what)

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
