"""Real processes for the tests: redis-server, wsk-server and haproxy on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
import requests

BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback port."""
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
        return True
    return False


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def require(program: str) -> str:
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if path is None:
        raise RuntimeError(f"{program} is not installed: run 'make test', which installs it")
    return path


class Process:
    """A child process whose output goes to a log file kept for failed tests."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def spawn(
        self, argv: list[str], env: dict[str, str] | None = None, open_files: int | None = None
    ) -> None:
        """Start ``argv``; ``open_files`` caps its descriptors (soft and hard limit)."""

        def limit() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=limit,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 15) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def metric_in(text: str, name: str, default: float | None = None, **labels: str) -> float:
    """The value of one series in Prometheus text, e.g. ``metric_in(t, "x_total", event="a")``.

    A series that is not there is ``default`` (a labelled counter not counted yet is
    0), or an error when no default is given.
    """
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    )
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    if default is not None:
        return default
    raise AssertionError(f"{wanted} not in metrics")


class RedisTap:
    """Records what crosses a Redis pub/sub channel while it is open (a context manager)."""

    def __init__(self, url: str, channel: str) -> None:
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.channel = channel
        self.messages: list[bytes] = []
        self.thread = threading.Thread(target=self._listen, daemon=True)

    def __enter__(self) -> RedisTap:
        self.pubsub.subscribe(self.channel)
        self.pubsub.get_message(timeout=5)  # the subscription's confirmation
        self.thread.start()
        return self

    def _listen(self) -> None:
        with contextlib.suppress(Exception):  # ends when __exit__ closes the connection
            for message in self.pubsub.listen():
                self.messages.append(message["data"])

    def count(self, marker: str) -> int:
        """How many messages so far contain ``marker``."""
        return sum(marker.encode() in data for data in list(self.messages))

    def __exit__(self, *exc: object) -> None:
        self.pubsub.close()


class RedisServer(Process):
    def __init__(self, workdir: Path, password: str | None = None, tls: bool = False) -> None:
        super().__init__("redis", workdir)
        self.port = free_port()
        self.password = password
        self.tls_dir = workdir / "redis-tls" if tls else None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls_dir:
            ca = self.tls_dir / "ca.crt"
            return f"rediss://{auth}{LOOPBACK}:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [require("redis-server"), "--bind", LOOPBACK]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        if self.tls_dir:
            make_certificates(self.tls_dir)
            argv += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            argv += ["--tls-cert-file", str(self.tls_dir / "server.crt")]
            argv += ["--tls-key-file", str(self.tls_dir / "server.key")]
            argv += ["--tls-ca-cert-file", str(self.tls_dir / "ca.crt")]
        else:
            argv += ["--port", str(self.port)]
        if self.password:
            argv += ["--requirepass", self.password]
        self.spawn(argv)
        wait_until(self.answers, 10, what="redis-server to answer")
        return self

    def answers(self) -> bool:
        if self.tls_dir:
            return self.listening()
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
                if self.password:
                    sock.sendall(f"AUTH {self.password}\r\n".encode())
                    sock.recv(64)
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def listening(self) -> bool:
        return accepts(self.port)


def make_certificates(directory: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1, made with openssl."""
    if (directory / "server.crt").exists():
        return
    directory.mkdir(parents=True, exist_ok=True)
    openssl = require("openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    key = ["-newkey", "rsa:2048", "-nodes"]
    run(
        "req",
        "-x509",
        *key,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=wsk test CA",
    )
    run("req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={LOOPBACK}")
    (directory / "san.ext").write_text(f"subjectAltName=IP:{LOOPBACK}\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    )


class WskNode(Process):
    def __init__(self, workdir: Path, name: str, redis_url: str, **options: object) -> None:
        super().__init__(name, workdir)
        self.port = free_port()
        self.node_name = name
        self.options = {
            "host": LOOPBACK,
            "port": self.port,
            "node-name": name,
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

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)


HAPROXY_CONFIG = """\
global
    # each proxied connection takes two descriptors; these machines allow 20000
    maxconn 9000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
    option redispatch
    retries 3

frontend public
    bind {bind}
    http-request deny deny_status 404 unless {{ path /wsk }} || {{ path_beg /wsk/ }}
    default_backend wsk

backend wsk
    balance {balance}
    option httpchk GET /healthz
    http-check expect status 200
    http-request replace-path ^/wsk/?(.*) /\\1
{cookie}{servers}
"""


class HAProxy(Process):
    """HAProxy in front of the nodes, with the /wsk -> / rewrite and, when sticky, a cookie."""

    COOKIE = "WSKID"

    def __init__(self, workdir: Path, nodes: list[WskNode], sticky: bool = True) -> None:
        super().__init__("haproxy", workdir)
        self.port = free_port()
        self.config_path = workdir / "haproxy.cfg"
        cookie = f"    cookie {self.COOKIE} insert indirect nocache httponly\n" if sticky else ""
        servers = "".join(
            f"    server {node.name} {LOOPBACK}:{node.port} check inter 300ms fall 2 rise 2"
            + (f" cookie {node.name}" if sticky else "")
            + "\n"
            for node in nodes
        )
        self.config_path.write_text(
            HAPROXY_CONFIG.format(
                bind=f"{LOOPBACK}:{self.port}",
                balance="leastconn" if sticky else "roundrobin",
                cookie=cookie,
                servers=servers,
            )
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> HAProxy:
        haproxy = require("haproxy")
        check = subprocess.run(
            [haproxy, "-c", "-f", str(self.config_path)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.spawn([haproxy, "-db", "-f", str(self.config_path)])
        wait_until(self.listening, 10, what="haproxy to listen")
        return self

    def listening(self) -> bool:
        return accepts(self.port)
