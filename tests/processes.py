"""The tests' processes: wsk-server nodes and their HAProxy, on testkit's shared parts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import redis
import requests

from testkit import haproxy
from testkit.procs import (  # noqa: F401 - the tests import these from here
    LOOPBACK,
    Process,
    RedisServer,
    accepts,
    free_port,
    make_certificates,
    require,
    wait_until,
)
from wsk.stream import shard_of

BIN = Path(sys.executable).parent


def metric_in(text: str, name: str, default: float | None = None, **labels: str) -> float:
    """The value of one series in Prometheus text, e.g. ``metric_in(t, "x_total", event="a")``.

    Labels match whatever their order. A series that is not there is ``default``
    (a labelled counter not counted yet is 0), or an error when no default is given.
    """
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        found, _, rest = series.partition("{")
        if found != name:
            continue
        pairs = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if pairs == labels:
            return float(value)
    if default is not None:
        return default
    raise AssertionError(f"{name}{labels or ''} not in metrics")


class StreamTap:
    """Counts what was appended to a cluster's Redis stream while it is open (a context manager)."""

    def __init__(self, url: str, cluster: str = "wsk", room: str | None = None) -> None:
        self.client = redis.Redis.from_url(url)
        # an emit to a room is in the room's shard of the stream (wsk.stream)
        self.key = f"{cluster}:stream" + (f":{shard_of('/', room)}" if room else "")
        self.start = "0-0"

    def __enter__(self) -> StreamTap:
        last = self.client.xrevrange(self.key, count=1)
        self.start = last[0][0].decode() if last else "0-0"
        return self

    def count(self, marker: str) -> int:
        """How many entries appended since it opened contain ``marker``."""
        entries = self.client.xrange(self.key, min=f"({self.start}", max="+")
        return sum(marker.encode() in fields[b"m"] for _, fields in entries)

    def __exit__(self, *exc: object) -> None:
        self.client.close()


class WskNode(Process):
    def __init__(self, workdir: Path, name: str, redis_url: str, **options: object) -> None:
        super().__init__(name, workdir)
        self.port = free_port()
        self.node_name = name
        self.options = {
            "host": LOOPBACK,
            "port": self.port,
            "node-name": name,
            # HAProxy's server is named after the node: it routes a sid to it by this
            "sid-prefix": name,
            "redis-url": redis_url,
            "heartbeat-interval": 0.5,
            "heartbeat-jitter": 0,
            "ping-interval": 1,
            "ping-timeout": 3,
            "drain-timeout": 5,
        }
        self.options.update({key.replace("_", "-"): value for key, value in options.items()})
        self.open_files: int | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, wait_healthy: bool = True) -> WskNode:
        argv = [str(BIN / "wsk-server")]
        for key, value in self.options.items():
            argv += [f"--{key}", str(value)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSK_")}
        self.spawn(argv, env, open_files=self.open_files)
        wait_until(self.listening, 15, what=f"{self.name} to listen")
        if wait_healthy:
            wait_until(lambda: self.health()[0] == 200, 15, what=f"{self.name} to be healthy")
        return self

    def listening(self) -> bool:
        if not self.running:
            raise AssertionError(f"{self.name} exited:\n{self.log()}")
        return accepts(self.port)

    def metric(self, name: str, default: float | None = None, **labels: str) -> float:
        """The current value of one of the node's metrics (see ``metric_in``)."""
        text = requests.get(self.url + "/metrics", timeout=5).text
        return metric_in(text, name, default, **labels)

    def health(self) -> tuple[int, dict]:
        response = requests.get(self.url + "/healthz", timeout=5)
        return response.status_code, response.json()

    def redis_health(self) -> tuple[int, dict]:
        """``/healthz/redis``: whether the node reaches Redis."""
        response = requests.get(self.url + "/healthz/redis", timeout=5)
        return response.status_code, response.json()

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)


class HAProxy(Process):
    """HAProxy in front of the nodes, with the /wsk -> / rewrite and, when sticky, a cookie."""

    COOKIE = "WSKID"

    def __init__(
        self, workdir: Path, nodes: list[WskNode], sticky: bool = True, tls: bool = False
    ) -> None:
        super().__init__("haproxy", workdir)
        self.port = free_port()
        self.config_path = workdir / "haproxy.cfg"
        # a unix socket's path must be short: not below pytest's long tmp_path
        self.socket_path = f"/tmp/wsk-haproxy-{os.getpid()}-{self.port}.sock"
        servers = [haproxy.Server(node.name, LOOPBACK, node.port) for node in nodes]
        bind = f"{LOOPBACK}:{self.port}"
        # with tls, the frontend terminates TLS as the role's does, with a throwaway CA's
        # certificate for 127.0.0.1 (``ca_file`` is the CA)
        self.ca_file: Path | None = None
        if tls:
            certificates = workdir / "haproxy-tls"
            make_certificates(certificates)
            pem = certificates / "server.pem"
            parts = [certificates / "server.crt", certificates / "server.key"]
            pem.write_text("".join(part.read_text() for part in parts))
            bind += f" ssl crt {pem}"
            self.ca_file = certificates / "ca.crt"
        self.config_path.write_text(
            haproxy.config(
                bind,
                servers,
                sticky=sticky,
                cookie=self.COOKIE,
                balance="leastconn" if sticky else "roundrobin",
                stats_socket=self.socket_path,
            )
        )

    @property
    def url(self) -> str:
        scheme = "https" if self.ca_file else "http"
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def start(self) -> HAProxy:
        binary = require("haproxy")
        check = subprocess.run(
            [binary, "-c", "-f", str(self.config_path)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.spawn([binary, "-db", "-f", str(self.config_path)])
        wait_until(self.listening, 10, what="haproxy to listen")
        return self

    def listening(self) -> bool:
        return accepts(self.port)

    def command(self, line: str) -> str:
        """One command of HAProxy's runtime API (its admin socket), and the answer."""
        import socket as sockets

        with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(self.socket_path)
            sock.sendall(line.encode() + b"\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer.decode()

    def server_states(self) -> dict[str, str]:
        """Each server of backend wsk and its status (UP, DOWN, MAINT, ...), from ``show stat``."""
        rows = self.command("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        states = {}
        for row in rows[1:]:
            fields = dict(zip(header, row.split(","), strict=False))
            if fields.get("pxname") == "wsk" and fields.get("svname") not in ("BACKEND", None):
                states[fields["svname"]] = fields["status"]
        return states

    def stop(self, timeout: float = 15) -> int | None:
        code = super().stop(timeout)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        return code
