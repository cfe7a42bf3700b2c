"""W7: fan-out measured with socket.io-client, a generator that is not the benchmark's own.

The benchmark's load generator (``bench/loadgen.py``) is lean: a receiver costs it
little, so the servers are what a W1 step measures. Users' clients run
socket.io-client; W7 runs it (``bench/node/generator.js``, one Node process) against
both stacks at the same offered rates, in turns, and reports the latency its
receivers see and what the servers spent per delivered message meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from typing import Any

from bench.procs import NODE_DIR, BenchError, Cluster, require
from bench.workers import Sampler
from bench.workloads import Run

Json = dict[str, Any]
GENERATOR = NODE_DIR / "generator.js"
CONNECT_GRACE_SECONDS = 120.0


def w7_outside(run: Run) -> list[Json]:
    """Each stack's steps, one per offered rate; which stack goes first alternates."""
    s = run.settings
    steps: dict[str, list[Json]] = {stack: [] for stack in s.stacks}
    with contextlib.ExitStack() as up:
        clusters = {stack: up.enter_context(run.cluster(stack, "w7")) for stack in s.stacks}
        for turn, rate in enumerate(s.w7_rates):
            order = list(s.stacks) if turn % 2 == 0 else list(reversed(s.stacks))
            for stack in order:
                step = generator_step(run, clusters[stack], rate, f"w7-{turn}")
                clusters[stack].check_refusals(f"W7 {stack} at {rate:g} publishes/s")
                print(
                    f"  {stack:>4} rate {rate:8g}/s received {step['received']}/"
                    f"{step['expected']} p50 {step['p50_ms']} ms p99 {step['p99_ms']} ms "
                    f"cpu {step['cpu_cores']}",
                    flush=True,
                )
                steps[stack].append(step)
        for stack, cluster in clusters.items():
            run.check_logs(cluster, f"W7 {stack}")
    return [
        {
            "stack": stack,
            "receivers": s.w7_receivers,
            "payload_bytes": s.w7_payload,
            "steps": steps[stack],
        }
        for stack in s.stacks
    ]


def generator_step(run: Run, cluster: Cluster, rate: float, room: str) -> Json:
    """One run of the generator at ``rate``; its result, with the CPU of each process."""
    s = run.settings
    argv = [
        require("node"),
        str(GENERATOR),
        f"--url={cluster.haproxy.url}",
        f"--receivers={s.w7_receivers}",
        f"--room={room}",
        f"--rate={rate:g}",
        f"--seconds={s.w7_seconds:g}",
        f"--size={s.w7_payload}",
        f"--drain={s.w1_drain_seconds:g}",
    ]
    proc = subprocess.Popen(  # noqa: S603
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(s.w7_seconds + CONNECT_GRACE_SECONDS, proc.kill)
    watchdog.start()
    groups = {node.node_name: [node.pid] for node in cluster.nodes}
    groups["haproxy"] = [p.pid for p in cluster.haproxy.processes]
    groups["redis"] = [run.redis.pid]
    groups["generator"] = [proc.pid]
    sampler: Sampler | None = None
    result: Json | None = None
    cpu: Json = {}
    line = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "start":
                sampler = Sampler(groups)
            elif event["event"] == "result" and sampler is not None:
                cpu = sampler.stop()  # before its clients close
                result = event
                break
            elif event["event"] == "error":
                break
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    if result is None or sampler is None:
        err = proc.stderr.read() if proc.stderr else ""
        raise BenchError(f"W7: the socket.io-client generator failed at {rate:g}/s: {line}{err}")
    received = result["received"]
    nodes = sum(v for k, v in cpu.items() if k.startswith("node"))
    kernel = sum(v for k, v in sampler.kernel.items() if k.startswith("node"))
    per_delivery = sampler.wall * 1e6 / received if received else None
    return {
        "publish_rate": rate,
        "offered_per_s": round(rate * s.w7_receivers, 1),
        "sent": result["sent"],
        "acked": result["acked"],
        "received": received,
        "expected": result["expected"],
        "delivery": round(received / result["expected"], 5) if result["expected"] else 0.0,
        "disconnects": result["disconnects"],
        "p50_ms": result["p50_ms"],
        "p95_ms": result["p95_ms"],
        "p99_ms": result["p99_ms"],
        "cpu_cores": cpu,
        "cpu_kernel_cores": sampler.kernel,
        "cpu_seconds_wall": round(sampler.wall, 3),
        "server_us_per_delivery": round(nodes * per_delivery, 2) if per_delivery else None,
        "server_kernel_us_per_delivery": round(kernel * per_delivery, 2) if per_delivery else None,
    }
