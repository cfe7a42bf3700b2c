#!/usr/bin/env python3
"""What WAIT and min-replicas-to-write cost a publish: XADD alone, XADD + WAIT 1 100, and XADD
with min-replicas-to-write 1, against a primary and one replica started here on loopback.

Usage: .venv/bin/python scripts/measure-redis-wait.py [ROUNDS]   (docs/redis-ha.md)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import redis

sys.path.insert(0, ".")
from testkit.procs import free_port, wait_until


def start(directory: str, port: int, *extra: str) -> subprocess.Popen:
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", directory, *extra]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)  # noqa: S603 - our own argv


def timed(rounds: int, once: Callable[[], None]) -> tuple[float, float]:
    """Median and 99th percentile of one call, in microseconds."""
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        once()
        samples.append((time.perf_counter() - began) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as primary_dir, tempfile.TemporaryDirectory() as replica_dir:
        p_port, r_port = free_port(), free_port()
        procs = [start(primary_dir, p_port)]
        procs.append(start(replica_dir, r_port, "--replicaof", "127.0.0.1", str(p_port)))
        try:
            primary = redis.Redis(port=p_port)
            replica = redis.Redis(port=r_port)
            wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 10)
            body = {"m": '{"method":"emit","event":"message","data":["x"]}'}

            def xadd() -> None:
                primary.xadd("wsk:stream", body, maxlen=10000, approximate=True)

            def xadd_wait() -> None:
                pipe = primary.pipeline(transaction=False)
                pipe.xadd("wsk:stream", body, maxlen=10000, approximate=True)
                pipe.execute_command("WAIT", 1, 100)
                acked = pipe.execute()[1]
                assert acked == 1, acked

            timed(500, xadd)  # warm up
            results = {"XADD": timed(rounds, xadd), "XADD + WAIT 1 100": timed(rounds, xadd_wait)}
            primary.config_set("min-replicas-to-write", 1)
            primary.config_set("min-replicas-max-lag", 10)
            results["XADD, min-replicas-to-write 1"] = timed(rounds, xadd)
            base = results["XADD"][0]
            for name, (median, p99) in results.items():
                print(f"{name:32} median {median:7.1f} us  p99 {p99:7.1f} us  x{median / base:.2f}")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
