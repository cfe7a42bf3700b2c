"""Child processes for tests and benchmarks: free ports, waiting, redis-server, certificates."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class TimedOut(AssertionError):
    """What was waited for did not happen in time."""


class Missing(RuntimeError):
    """A program the processes need is not installed."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on the loopback ``port``."""
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
        return True
    return False


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll ``predicate`` until it returns something true, and return that; TimedOut after."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def require(program: str) -> str:
    """The path of ``program``; Missing when it is not installed."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin")
    if path is None:
        raise Missing(f"{program} is not installed: run 'make test', which installs it")
    return path


@dataclass
class Usage:
    """CPU seconds and resident memory of one process at one moment.

    ``cpu`` is user and system time together; ``system`` is the part spent in the
    kernel on the process' behalf (its system calls: a socket write, most of all).
    """

    cpu: float
    rss: int
    system: float = 0.0


def usage(pid: int) -> Usage:
    """CPU seconds used so far (user + system) and RSS in bytes of process ``pid``."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{pid}/statm") as statm:
        rss_pages = int(statm.read().split()[1])
    user, system = int(fields[11]), int(fields[12])
    return Usage(
        cpu=(user + system) / CLOCK_TICKS, rss=rss_pages * PAGE_SIZE, system=system / CLOCK_TICKS
    )


class Process:
    """A child process in a session of its own, whose output goes to a log file."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(
        self, argv: list[str], env: dict[str, str] | None = None, open_files: int | None = None
    ) -> None:
        """Start ``argv``; ``open_files`` caps its descriptors (soft and hard limit)."""

        def limit() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=limit if open_files is not None else None,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def usage(self) -> Usage:
        return usage(self.pid)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, size: int = 2000) -> str:
        return self.log()[-size:]


class RedisServer(Process):
    """A redis-server on a free loopback port, without persistence; with a password or TLS."""

    def __init__(
        self, workdir: Path, password: str | None = None, tls: bool = False, aof: bool = False
    ) -> None:
        super().__init__("redis", workdir)
        self.port = free_port()
        self.password = password
        self.tls_dir = workdir / "redis-tls" if tls else None
        # with an append-only file, as the redis role runs it: a restart keeps the data
        self.data_dir = workdir / "redis-data" if aof else None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls_dir:
            ca = self.tls_dir / "ca.crt"
            return f"rediss://{auth}{LOOPBACK}:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [require("redis-server"), "--bind", LOOPBACK, "--save", "", "--daemonize", "no"]
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            argv += ["--dir", str(self.data_dir), "--appendonly", "yes"]
            argv += ["--appendfsync", "everysec"]
        else:
            argv += ["--appendonly", "no"]
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
        if not self.running:
            raise Missing(f"redis-server exited:\n{self.log_tail()}")
        if self.tls_dir:
            return accepts(self.port)
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
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)  # noqa: S603

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
