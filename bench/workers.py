"""The coordinator's side of the load generator: its processes and their commands."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.procs import CLOCK_TICKS, ROOT, BenchError, Usage, usage

REPLY_TIMEOUT = 120.0

Json = dict[str, Any]


class Worker:
    """One ``bench.loadgen`` process."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.loadgen"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                text=True,
                start_new_session=True,
            )
        self.cpu = 0.0

    def send(self, command: str, **arguments: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": command, **arguments}) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = REPLY_TIMEOUT) -> Json:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise BenchError(f"{self.name} did not answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited:\n{tail}")
        reply = json.loads(line)
        if "error" in reply:
            raise BenchError(f"{self.name}: {reply['error']}")
        self.cpu = reply["cpu"]
        return reply

    def call(self, command: str, **arguments: Any) -> Json:
        self.send(command, **arguments)
        return self.receive()

    def usage(self) -> Usage:
        return usage(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Pool:
    """Several load-generator processes, driven together."""

    def __init__(self, count: int, workdir: Path, prefix: str = "loadgen") -> None:
        self.workers = [Worker(f"{prefix}-{i}", workdir) for i in range(count)]
        try:
            self.all("ping")
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __len__(self) -> int:
        return len(self.workers)

    def __getitem__(self, index: int) -> Worker:
        return self.workers[index]

    def all(
        self, command: str, workers: Sequence[Worker] | None = None, **arguments: Any
    ) -> list[Json]:
        """Send the same command to ``workers`` (all by default); their replies."""
        chosen = list(workers if workers is not None else self.workers)
        for worker in chosen:
            worker.send(command, **arguments)
        return [worker.receive() for worker in chosen]

    def each(
        self, command: str, arguments: Sequence[Json], workers: Sequence[Worker]
    ) -> list[Json]:
        """Send ``command`` to each worker with its own arguments; their replies."""
        for worker, args in zip(workers, arguments, strict=True):
            worker.send(command, **args)
        return [worker.receive() for worker in workers]

    def cpu(self, workers: Sequence[Worker] | None = None) -> float:
        """CPU seconds the workers used so far, read from /proc."""
        return sum(w.usage().cpu for w in (workers if workers is not None else self.workers))

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as integers allow."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Sampler:
    """CPU used by groups of processes between two moments, as shares of one core.

    ``kernel`` (after ``stop``) is the part of each group's CPU spent in the kernel.
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.start, self.start_kernel = self._read()
        self.started = time.monotonic()
        self.wall = 0.0
        self.kernel: dict[str, float] = {}

    def _read(self) -> tuple[dict[str, float], dict[str, float]]:
        used, kernel = {}, {}
        for name, pids in self.groups.items():
            parts = [usage(pid) for pid in pids]
            used[name] = sum(p.cpu for p in parts)
            kernel[name] = sum(p.system for p in parts)
        used["machine"] = machine_busy()
        return used, kernel

    def stop(self) -> dict[str, float]:
        """Each group's CPU since the start, in cores (1.0 is one core busy all along).

        ``machine`` is every process of the machine, this run's and any other's;
        ``others`` is what is left of it once the groups are taken away.
        """
        end, end_kernel = self._read()
        wall = self.wall = time.monotonic() - self.started
        cores = {name: round((end[name] - self.start[name]) / wall, 3) for name in end}
        ours = sum(value for name, value in cores.items() if name != "machine")
        cores["others"] = round(max(0.0, cores["machine"] - ours), 3)
        self.kernel = {
            name: round((end_kernel[name] - self.start_kernel[name]) / wall, 3)
            for name in end_kernel
        }
        return cores


def background_cores(seconds: float) -> float:
    """How busy the machine is, in cores, measured over ``seconds``."""
    start = machine_busy()
    time.sleep(seconds)
    return round((machine_busy() - start) / seconds, 3)


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all but idle and I/O wait) since boot."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLOCK_TICKS
