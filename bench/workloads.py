"""The five workloads, each run against one stack at a time, and the wsk profile.

Every workload starts a fresh cluster of the stack it measures (its nodes and
an HAProxy with the same configuration for both stacks) on the run's Redis, and
fresh load-generator processes, and stops them all before it returns.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import hist
from bench.procs import BenchError, Cluster, NodeSettings, RedisServer, descriptor_limit
from bench.report import server_cores
from bench.settings import Settings
from bench.workers import Pool, Sampler, Worker, split

ROOM = "bench"
# W5: how long after a fault a client that has not lost its connection counts as unhurt
UNHURT_SECONDS = 3.0
QUIET_MAX_SECONDS = 20.0
# busier than this, in cores, and a two-core machine has nothing left to give
SATURATED_CORES = 1.9

Json = dict[str, Any]


@dataclass
class Run:
    """What the workloads of one run share: settings, Redis, a work directory, notes."""

    settings: Settings
    workdir: Path
    redis: RedisServer
    notes: list[str] = field(default_factory=list)

    @property
    def node_settings(self) -> NodeSettings:
        s = self.settings
        return NodeSettings(
            ping_interval=s.ping_interval,
            ping_timeout=s.ping_timeout,
            heartbeat_interval=s.heartbeat_interval,
            wsk_log_level=s.wsk_log_level,
        )

    def cluster(
        self,
        stack: str,
        tag: str,
        haproxy_processes: int = 1,
        flags: dict[str, str] | None = None,
        variant: str = "",
        nodes: int | None = None,
    ) -> Cluster:
        return Cluster(
            stack,
            self.workdir,
            self.redis,
            self.node_settings,
            nodes or self.settings.nodes,
            self.settings.haproxy_maxconn,
            haproxy_processes,
            tag,
            flags,
            variant,
        )

    def check_logs(self, cluster: Cluster, what: str) -> dict[str, Any]:
        """The nodes' error lines of one workload; a note when there are any."""
        problems = cluster.log_problems()
        if problems["lines"]:
            first = next(iter(problems["most_frequent"]))
            self.note(
                f"{what}: the {cluster.stack} nodes logged {problems['lines']} error lines, "
                f"most often `{first}`"
            )
        return problems

    def pool(self, count: int, prefix: str) -> Pool:
        return Pool(count, self.workdir, prefix)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
            print(f"  note: {text}", flush=True)


def connect(
    pool: Pool,
    workers: list[Worker],
    url: str,
    count: int,
    concurrency: int,
    room: str | None = None,
    cookie: str | None = None,
) -> Json:
    """Open ``count`` clients spread over ``workers``; how many connected and what failed."""
    counts = split(count, len(workers))
    per_worker = max(1, concurrency // len(workers))
    args = [
        {"url": url, "count": n, "concurrency": per_worker, "room": room, "cookie": cookie}
        for n in counts
    ]
    replies = pool.each("connect", args, workers)
    failures: Counter[str] = Counter()
    for reply in replies:
        failures.update(reply["failures"])
    if any("EMFILE" in name or "ENFILE" in name for name in failures):
        raise BenchError(
            f"the load generator hit the open-files limit ({descriptor_limit()[1]} a process): "
            f"{dict(failures)}; give it more processes"
        )
    if count and not sum(r["connected"] for r in replies):
        raise BenchError(f"no client could connect to {url}: {dict(failures)}")
    return {
        "connected": sum(r["connected"] for r in replies),
        "failures": dict(failures),
        "seconds": max(r["seconds"] for r in replies),
    }


def cpu_groups(
    cluster: Cluster, run: Run, pool: Pool, publisher: Worker | None
) -> dict[str, list[int]]:
    """The processes whose CPU a step reports, by role."""
    groups = {node.node_name: [node.pid] for node in cluster.nodes}
    groups["haproxy"] = [p.pid for p in cluster.haproxy.processes]
    groups["redis"] = [run.redis.pid]
    receivers = [w for w in pool.workers if w is not publisher]
    if publisher is not None:
        groups["publisher"] = [publisher.proc.pid]
    groups["generator"] = [w.proc.pid for w in receivers]
    return groups


def publish_step(
    run: Run,
    cluster: Cluster,
    pool: Pool,
    publisher: Worker,
    receivers: list[Worker],
    expected_per_message: int,
    step: int,
    rate: float,
    payload: int,
    seconds: float,
) -> Json:
    """Publish at ``rate`` for ``seconds``; what arrived, how late, and what it cost.

    The last third of the messages is marked apart (``step`` + 1 of a pair of
    ids), so that a queue that grows through the step shows as a late tail
    even when the step's p95 as a whole is still fine.
    """
    s = run.settings
    head, tail = 2 * step, 2 * step + 1
    total = max(1, round(rate * seconds))
    sampler = Sampler(cpu_groups(cluster, run, pool, publisher))
    sent = publisher.call(
        "publish",
        rate=rate,
        seconds=seconds,
        room=ROOM,
        size=payload,
        step=head,
        tail_step=tail,
        tail_from=total - total // 3,
    )
    expected = sent["sent"] * expected_per_message
    replies, received = wait_received(pool, receivers, [head, tail], expected, s.w1_drain_seconds)
    cpu = sampler.stop()
    latency = hist.summary(hist.merge(r["steps"][k]["hist"] for r in replies for k in r["steps"]))
    tail_latency = hist.summary(hist.merge(r["steps"][str(tail)]["hist"] for r in replies))
    delivery = received / expected if expected else 0.0
    kept_pace = sent["seconds"] <= seconds * 1.1 + 0.05
    limit = s.w1_max_p95_ms
    p95, tail_p95 = latency["p95_ms"], tail_latency["p95_ms"]
    passed = (
        delivery >= s.w1_min_delivery
        and p95 is not None
        and p95 < limit
        and (tail_p95 is None or tail_p95 < limit)
        and kept_pace
    )
    return {
        "step": step,
        "publish_rate": round(rate, 3),
        "offered_per_s": round(rate * expected_per_message, 1),
        "sent": sent["sent"],
        "send_seconds": round(sent["seconds"], 3),
        "publisher_kept_pace": kept_pace,
        "received": received,
        "expected": expected,
        "delivery": round(delivery, 5),
        "delivered_per_s": round(received / sent["seconds"], 1),
        "latency": latency,
        "tail_latency": tail_latency,
        "cpu_cores": cpu,
        "cpu_kernel_cores": sampler.kernel,
        "cpu_seconds_wall": round(sampler.wall, 3),
        "disconnects": sum(r["disconnects"] for r in replies),
        "passed": passed,
    }


def wait_received(
    pool: Pool, receivers: list[Worker], steps: list[int], expected: int, seconds: float
) -> tuple[list[Json], int]:
    """The receivers' replies once ``expected`` messages of ``steps`` arrived, or after
    ``seconds``; and how many arrived."""
    deadline = time.monotonic() + seconds
    while True:
        replies = pool.all("received", receivers, steps=steps)
        received = sum(r["steps"][key]["received"] for r in replies for key in r["steps"])
        if received >= expected or time.monotonic() > deadline:
            return replies, received
        time.sleep(0.1)


def wait_quiet(pool: Pool, receivers: list[Worker], step: int) -> float:
    """Wait until the late messages of ``step`` stop arriving; the seconds it took."""
    started = time.monotonic()
    last = -1
    steps = [2 * step, 2 * step + 1]
    while time.monotonic() - started < QUIET_MAX_SECONDS:
        replies = pool.all("received", receivers, steps=steps)
        now = sum(r["steps"][key]["received"] for r in replies for key in r["steps"])
        if now == last:
            break
        last = now
        time.sleep(0.5)
    return time.monotonic() - started


@dataclass(frozen=True)
class Variant:
    """A stack as one workload runs it: its name in the results and its nodes' extra flags."""

    name: str
    stack: str
    flags: dict[str, str] = field(default_factory=dict)
    recovery_window: float | None = None


def default_variants(settings: Settings) -> list[Variant]:
    """Each stack once, as it is by default (wsk with its default --recovery-window)."""
    return [Variant(stack, stack) for stack in settings.stacks]


def w1_variants(settings: Settings) -> list[Variant]:
    """wsk once per W1 recovery window (the first under the name ``wsk``), Node as usual."""
    variants = []
    for stack in settings.stacks:
        if stack != "wsk":
            variants.append(Variant(stack, stack))
            continue
        for index, window in enumerate(settings.w1_recovery_windows):
            variants.append(
                Variant(
                    "wsk" if index == 0 else f"wsk-recovery-{window:g}",
                    "wsk",
                    {"recovery-window": f"{window:g}"},
                    window,
                )
            )
    return variants


@dataclass
class Side:
    """One stack's cluster and load-generator processes, set up for a workload."""

    stack: str
    cluster: Cluster
    pool: Pool
    receivers_wanted: int
    joined: Json = field(default_factory=dict)
    clients_per_node: dict[str, int] = field(default_factory=dict)
    steps: list[Json] = field(default_factory=list)
    best: Json | None = None
    failed: Json | None = None
    next_step: int = 1
    variant: Variant | None = None

    @property
    def name(self) -> str:
        return self.variant.name if self.variant is not None else self.stack

    @property
    def publisher(self) -> Worker:
        return self.pool[0]

    @property
    def receivers(self) -> list[Worker]:
        return self.pool.workers[1:]

    def publish(self, run: Run, rate: float, payload: int, seconds: float) -> Json:
        result = publish_step(
            run,
            self.cluster,
            self.pool,
            self.publisher,
            self.receivers,
            self.joined["connected"],
            self.next_step,
            rate,
            payload,
            seconds,
        )
        self.next_step += 1
        print(f"  {self.name:>4}", end="")
        _print_step(result)
        self.cluster.check_refusals(f"{self.name} step at {result['publish_rate']} publishes/s")
        return result


@contextlib.contextmanager
def publishing_sides(
    run: Run,
    tag: str,
    receivers: int,
    cookies: tuple[int, int] | None = None,
    variants: list[Variant] | None = None,
) -> Iterator[list[Side]]:
    """Both stacks' clusters at once, each with its receivers in one room and a publisher.

    Both stay up for the whole workload and take their steps in turns, so that
    whatever else the machine does at a given moment falls on both alike. With
    ``cookies`` (publisher's node, receivers' node), HAProxy's cookie sends
    each client to the node it names.
    """
    s = run.settings
    with contextlib.ExitStack() as stack:
        sides = []
        for variant in variants if variants is not None else default_variants(s):
            # a second variant of a stack gets its own channel, process names and logs
            own = variant.name if variant.name != variant.stack else ""
            cluster = stack.enter_context(
                run.cluster(variant.stack, tag, flags=variant.flags, variant=own)
            )
            pool = stack.enter_context(run.pool(1 + s.w1_receiver_workers, f"{tag}-{variant.name}"))
            sides.append(Side(variant.stack, cluster, pool, receivers, variant=variant))
        for side in sides:
            url = side.cluster.haproxy.url
            nodes = side.cluster.nodes
            publisher_cookie = receiver_cookie = None
            if cookies is not None:
                publisher_cookie = side.cluster.haproxy.cookie_for(nodes[cookies[0]])
                receiver_cookie = side.cluster.haproxy.cookie_for(nodes[cookies[1]])
            side.joined = connect(
                side.pool,
                side.receivers,
                url,
                receivers,
                s.connect_concurrency,
                room=ROOM,
                cookie=receiver_cookie,
            )
            connect(side.pool, [side.publisher], url, 1, 1, cookie=publisher_cookie)
            side.clients_per_node = {node.node_name: node.clients() for node in nodes}
            print(
                f"  {side.name}: {side.joined['connected']} receivers, clients per node "
                f"{side.clients_per_node}",
                flush=True,
            )
        yield sides


def w1_fan_out(run: Run, payload: int) -> list[Json]:
    """C clients in one room over two nodes; one publisher steps its rate up.

    The two stacks step up in turns (which goes first alternates), each on its
    own cluster; a stack that failed a step stops there.
    """
    s = run.settings
    with publishing_sides(run, f"w1-{payload}", s.w1_clients, variants=w1_variants(s)) as sides:
        rate = s.w1_start_rate
        for index in range(s.w1_max_steps):
            ramping = [side for side in sides if side.failed is None]
            if not ramping:
                break
            for side in ramping if index % 2 == 0 else ramping[::-1]:
                result = side.publish(run, rate, payload, s.w1_step_seconds)
                side.steps.append(result)
                if result["passed"]:
                    side.best = result
                else:
                    side.failed = result
                    # let its backlog drain before anyone's next step
                    result["quiet_after_seconds"] = round(
                        wait_quiet(side.pool, side.receivers, result["step"]), 1
                    )
            rate *= s.w1_factor
        for side in sides:
            if side.failed is not None and side.best is not None:
                # one more step halfway (geometrically) between the last pass and the failure
                middle = math.sqrt(side.best["publish_rate"] * side.failed["publish_rate"])
                result = side.publish(run, middle, payload, s.w1_step_seconds)
                side.steps.append(result)
                wait_quiet(side.pool, side.receivers, result["step"])
                if result["passed"]:
                    side.best = result
    results = []
    for side in sides:
        best = side.best
        if best is not None and best["cpu_cores"]["machine"] >= SATURATED_CORES:
            cpu = best["cpu_cores"]
            run.note(
                f"W1 {side.name} {payload} B: at its highest passing rate the machine was "
                f"saturated ({cpu['machine']} cores busy, {cpu['others']} of them outside the "
                f"benchmark; the nodes {server_cores(best):.2f}): that figure is what the whole "
                "machine (nodes, HAProxy, Redis and the load generator together) carries"
            )
        if side.failed is None:
            run.note(
                f"W1 {side.name} {payload} B passed every step up to "
                f"{side.steps[-1]['publish_rate']} publishes/s: its maximum is higher than measured"
            )
        results.append(
            {
                "stack": side.stack,
                "variant": side.name,
                "recovery_window": side.variant.recovery_window if side.variant else None,
                "payload_bytes": payload,
                "node_log_problems": run.check_logs(side.cluster, f"W1 {side.name} {payload} B"),
                "receivers": side.joined,
                "clients_per_node": side.clients_per_node,
                "steps": side.steps,
                "max": best,
            }
        )
    return results


def _print_step(result: Json) -> None:
    latency = result["latency"]
    p95 = latency["p95_ms"]
    print(
        f"    rate {result['publish_rate']:>8}/s delivered {result['delivered_per_s']:>9}/s "
        f"({result['delivery']:.2%}) p95 {p95 if p95 is None else round(p95, 1)} ms "
        f"cpu {result['cpu_cores']} {'pass' if result['passed'] else 'FAIL'}",
        flush=True,
    )


def w2_latency(run: Run, rates: list[tuple[str, float]]) -> list[Json]:
    """A publisher on node1, receivers on node2 (sent there by HAProxy's cookie).

    Both stacks are up at once and measure each rate in turns.
    """
    s = run.settings
    receivers = max(1, s.w1_clients // 2)
    results: dict[str, dict[str, Json]] = {stack: {} for stack in s.stacks}
    with publishing_sides(run, "w2", receivers, cookies=(0, 1)) as sides:
        for index, (label, rate) in enumerate(rates):
            for side in sides if index % 2 == 0 else sides[::-1]:
                results[side.stack][label] = side.publish(run, rate, 100, s.w2_seconds)
                wait_quiet(side.pool, side.receivers, results[side.stack][label]["step"])
    return [
        {
            "stack": side.stack,
            "node_log_problems": run.check_logs(side.cluster, "W2"),
            "receivers": side.joined,
            "clients_per_node": side.clients_per_node,
            "rates": results[side.stack],
        }
        for side in sides
    ]


def w3_idle(run: Run, stack: str) -> Json:
    """Ramp to many idle websocket connections through HAProxy; memory and idle CPU."""
    s = run.settings
    processes = max(1, math.ceil(s.w3_connections / s.haproxy_maxconn))
    if processes > 1:
        run.note(
            f"W3: one HAProxy process proxies at most {s.haproxy_maxconn} connections (two "
            f"descriptors each, {cluster_fd_note()}), so W3 runs {processes} HAProxy processes "
            "with the same configuration sharing the port through SO_REUSEPORT"
        )
    # each load-generator process keeps one descriptor per connection, and some spare
    workers = max(s.w3_workers, math.ceil(s.w3_connections / (descriptor_limit()[1] - 200)))
    if workers > s.w3_workers:
        run.note(f"W3: {workers} load-generator processes, for the open-files limit")
    with (
        run.cluster(stack, "w3", haproxy_processes=processes) as cluster,
        run.pool(workers, f"w3-{stack}") as pool,
    ):
        time.sleep(1.0)
        before = cluster.usage()
        started = time.monotonic()
        opened = connect(
            pool, pool.workers, cluster.haproxy.url, s.w3_connections, s.w3_concurrency
        )
        ramp = time.monotonic() - started
        time.sleep(s.w3_settle_seconds)
        clients = {node.node_name: node.clients() for node in cluster.nodes}
        sampler = Sampler(cpu_groups(cluster, run, pool, None))
        time.sleep(s.w3_idle_seconds)
        cpu = sampler.stop()
        after = cluster.usage()
        still_open = sum(r["open"] for r in pool.all("received", steps=[]))
        cluster.check_refusals(f"W3 {stack}")
    per_node = {}
    for node in cluster.nodes:
        name = node.node_name
        grown = after[name].rss - before[name].rss
        per_node[name] = {
            "clients": clients[name],
            "rss_before_bytes": before[name].rss,
            "rss_after_bytes": after[name].rss,
            "rss_per_connection_bytes": round(grown / clients[name]) if clients[name] > 0 else None,
            "idle_cpu_cores": cpu[name],
        }
    print(
        f"  W3 {stack}: {opened['connected']} connected in {ramp:.1f} s, "
        f"{still_open} still open after {s.w3_idle_seconds} s idle; {per_node}",
        flush=True,
    )
    return {
        "stack": stack,
        "node_log_problems": run.check_logs(cluster, "W3"),
        "wanted": s.w3_connections,
        "connected": opened["connected"],
        "failures": opened["failures"],
        "still_open": still_open,
        "ramp_seconds": round(ramp, 2),
        "haproxy_processes": processes,
        "nodes": per_node,
        "haproxy_rss_bytes": after["haproxy"].rss,
        "idle_cpu_cores": cpu,
    }


def cluster_fd_note() -> str:
    return f"of the {descriptor_limit()[1]} a process may open"


def w4_connect_rate(run: Run) -> list[Json]:
    """Handshakes per second through HAProxy, long-polling with upgrade and websocket-only.

    Both stacks are up at once and take each mode in turns.
    """
    s = run.settings
    results: dict[str, dict[str, Json]] = {stack: {} for stack in s.stacks}
    with contextlib.ExitStack() as stack:
        sides = [
            (
                name,
                stack.enter_context(run.cluster(name, "w4")),
                stack.enter_context(run.pool(s.w4_workers, f"w4-{name}")),
            )
            for name in s.stacks
        ]
        for index, mode in enumerate(("polling", "websocket")):
            for name, cluster, pool in sides if index % 2 == 0 else sides[::-1]:
                results[name][mode] = handshakes(run, cluster, pool, mode)
                print(
                    f"  W4 {name} {mode}: {results[name][mode]['per_s']}/s, p99 "
                    f"{results[name][mode]['latency']['p99_ms']} ms, failures "
                    f"{results[name][mode]['failures']}, cpu {results[name][mode]['cpu_cores']}",
                    flush=True,
                )
                cluster.check_refusals(f"W4 {name} {mode}")
                time.sleep(1.0)
    return [
        {
            "stack": name,
            "node_log_problems": run.check_logs(cluster, "W4"),
            "concurrency": s.w4_concurrency,
            "modes": results[name],
        }
        for name, cluster, _ in sides
    ]


def handshakes(run: Run, cluster: Cluster, pool: Pool, mode: str) -> Json:
    """Connect and disconnect back to back for a while; the rate, times and failures."""
    s = run.settings
    sampler = Sampler(cpu_groups(cluster, run, pool, None))
    replies = pool.all(
        "handshakes",
        url=cluster.haproxy.url,
        mode=mode,
        concurrency=max(1, s.w4_concurrency // len(pool)),
        seconds=s.w4_seconds,
    )
    cpu = sampler.stop()
    failures: Counter[str] = Counter()
    for reply in replies:
        failures.update(reply["failures"])
    completed = sum(r["completed"] for r in replies)
    seconds = max(r["seconds"] for r in replies)
    nodes = sum(v for k, v in cpu.items() if k.startswith("node"))
    kernel = sum(v for k, v in sampler.kernel.items() if k.startswith("node"))
    ms_per_connect = sampler.wall * 1000 / completed if completed else None
    return {
        "completed": completed,
        # the nodes' CPU per completed connect, and the part of it in the kernel
        "server_ms_per_connect": round(nodes * ms_per_connect, 3) if ms_per_connect else None,
        "server_kernel_ms_per_connect": (
            round(kernel * ms_per_connect, 3) if ms_per_connect else None
        ),
        "failed": sum(failures.values()),
        "failures": dict(failures),
        "seconds": round(seconds, 3),
        "per_s": round(completed / seconds, 1),
        "latency": hist.summary(hist.merge(r["hist"] for r in replies)),
        "cpu_cores": cpu,
    }


def profile_wsk(run: Run, rate: float, payload: int, out_raw: Path, out_svg: Path) -> Json:
    """Sample a wsk node with py-spy while W1 publishes at ``rate``."""
    s = run.settings
    py_spy = Path(sys.executable).parent / "py-spy"
    seconds = s.profile_seconds
    with (
        run.cluster("wsk", "profile") as cluster,
        run.pool(1 + s.w1_receiver_workers, "profile") as pool,
    ):
        publisher, receivers = pool[0], pool.workers[1:]
        url = cluster.haproxy.url
        joined = connect(pool, receivers, url, s.w1_clients, s.connect_concurrency, room=ROOM)
        connect(pool, [publisher], url, 1, 1)
        node1, node2 = cluster.nodes[0], cluster.nodes[1]
        common = ["record", "--duration", str(int(seconds)), "--rate", "100", "--nonblocking"]
        samplers = [
            subprocess.Popen(  # noqa: S603
                [
                    str(py_spy),
                    *common,
                    "--pid",
                    str(node1.pid),
                    "--format",
                    "raw",
                    "-o",
                    str(out_raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ),
            subprocess.Popen(  # noqa: S603
                [
                    str(py_spy),
                    *common,
                    "--pid",
                    str(node2.pid),
                    "--format",
                    "flamegraph",
                    "-o",
                    str(out_svg),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ),
        ]
        time.sleep(1.0)
        result = publish_step(
            run,
            cluster,
            pool,
            publisher,
            receivers,
            joined["connected"],
            90_000,
            rate,
            payload,
            seconds,
        )
        for sampler in samplers:
            _, err = sampler.communicate(timeout=seconds + 30)
            if sampler.returncode != 0:
                raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    problems = run.check_logs(cluster, "profile")
    if result["delivery"] < s.w1_min_delivery:
        run.note(
            f"profile: only {result['delivery']:.1%} of the messages arrived while the wsk node "
            "was sampled; the profile shows that state, not a healthy broadcast"
        )
    return {"rate": rate, "payload_bytes": payload, "step": result, "node_log_problems": problems}


RECOVERY_METRICS = (
    "wsk_recoveries_attempted_total",
    'wsk_recoveries_total{reason="",result="succeeded"}',
    "wsk_recovery_replayed_total",
)


NodeCounters = dict[str, dict[str, float]]


def _recovery_counters(cluster: Cluster) -> NodeCounters:
    """The recovery counters of each of the cluster's running wsk nodes."""
    return {
        node.node_name: {
            name: value
            for name, value in node.metrics().items()
            if name.startswith(("wsk_recoveries", "wsk_recovery_replayed"))
        }
        for node in cluster.nodes
        if node.running
    }


def _counters_grown(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> Json:
    """How much each counter grew on the nodes that ran throughout, added up."""
    grown: dict[str, int] = {}
    for node, counters in after.items():
        for name, value in counters.items():
            old = before.get(node, {}).get(name, 0.0)
            grown[name] = grown.get(name, 0) + round(value - old)
    return grown


def _members_status(pool: Pool, receivers: list[Worker], total: int = 0) -> Json:
    """The members of every receiving process, added up."""
    replies = pool.all("members_status", receivers, total=total)
    merged: Json = {"reconnect_failures": Counter()}
    merged["recover_hist"] = hist.merge(reply["recover_hist"] for reply in replies)
    for reply in replies:
        for key, value in reply.items():
            if key == "reconnect_failures":
                merged[key].update(value)
            elif key == "reconnect_examples":
                merged[key] = {**value, **merged.get(key, {})}
            elif key in ("first_attempt", "first_loss", "first_back"):
                values = [v for v in (merged.get(key), value) if v is not None]
                merged[key] = min(values) if values else None
            elif key in ("last_back",):
                values = [v for v in (merged.get(key), value) if v is not None]
                merged[key] = max(values) if values else None
            elif isinstance(value, int | float):
                merged[key] = merged.get(key, 0) + value
    merged["reconnect_failures"] = dict(merged["reconnect_failures"])
    return merged


def recovery_fault(
    run: Run, cluster: Cluster, pool: Pool, fault: str, step: int, stack: str
) -> Json:
    """One fault while the publisher keeps sending: how fast and how well the clients recover.

    ``drop`` breaks every client's connection at once (their node lives); ``kill``
    kills node1, which holds them all, with SIGKILL (node2 takes them, through
    HAProxy's redispatch). Each client reconnects by itself with its ``pid`` and
    offset; afterwards every client must have every published message once.
    """
    s = run.settings
    publisher, receivers = pool[0], pool.workers[1:]
    pool.all("members_reset", receivers)
    before = _recovery_counters(cluster)
    # HAProxy may have redispatched a reconnect of an earlier fault to the other node
    on_nodes = {node.node_name: node.clients() for node in cluster.nodes if node.running}
    publisher.call("publish_start", rate=s.w5_rate, room=ROOM, size=s.w5_payload, step=step)
    time.sleep(s.w5_before_seconds)
    groups = cpu_groups(cluster, run, pool, publisher)
    if fault == "kill":
        # the node that dies takes its CPU figure with it: what counts is the one taking over
        groups.pop(cluster.nodes[0].node_name)
    sampler = Sampler(groups)
    if fault == "drop":
        pool.all("members_drop", receivers)
    elif fault == "kill":
        cluster.nodes[0].kill()
    else:
        raise BenchError(f"unknown W5 fault {fault!r}")
    faulted = time.monotonic()
    deadline = faulted + s.w5_recover_timeout
    members = 0
    while True:
        status = _members_status(pool, receivers)
        members, lost = status["members"], status["lost"]
        # every client that lost its connection is back (after a kill, those on the other
        # node lose nothing: give their connections a few seconds to prove it)
        everyone = lost >= members or time.monotonic() - faulted > UNHURT_SECONDS
        if lost and status["back"] >= lost and everyone:
            break
        if time.monotonic() > deadline:
            run.note(
                f"W5 {stack} {fault}: only {status['back']} of the {lost} clients that lost "
                f"their connection were back {s.w5_recover_timeout:g} s after the fault"
            )
            break
        time.sleep(0.2)
    cpu = sampler.stop()
    time.sleep(s.w5_after_seconds)
    published = publisher.call("publish_stop")
    # wait for the last messages to reach every client
    expected = published["sent"] * members
    settle = time.monotonic() + s.w5_settle_seconds
    last, still = -1, time.monotonic()
    while True:
        status = _members_status(pool, receivers, total=published["sent"])
        now = time.monotonic()
        if status["received"] != last:
            last, still = status["received"], now
        # everything arrived, or nothing more for a second (what was lost stays lost)
        if status["received"] >= expected or now - still > 1.0 or now > settle:
            break
        time.sleep(0.2)
    after = _recovery_counters(cluster)
    cluster.check_refusals(f"W5 {stack} {fault}")
    first, last = status["first_attempt"], status["last_back"]
    span = (last - first) if first is not None and last is not None else None
    recovered = status["recovered"]
    server = _counters_grown(before, after)
    first_back = status["first_back"]
    pace = (last - first_back) if first_back is not None and last is not None else None
    result = {
        "fault": fault,
        "clients": members,
        "clients_per_node": on_nodes,
        "lost_connection": status["lost"],
        "back": status["back"],
        "recovered": recovered,
        "not_recovered": status["not_recovered"],
        "attempts": status["attempts"],
        "reconnect_failures": status["reconnect_failures"],
        "reconnect_failure_examples": status.get("reconnect_examples", {}),
        "recover_seconds": round(span, 3) if span is not None else None,
        "recovered_per_s": round(recovered / span, 1) if span and recovered else 0.0,
        # from the first client back to the last: the pace once the way to a node is open
        # (after a kill, HAProxy's retries and health checks come first)
        "recovered_per_s_after_first": (
            round((recovered - 1) / pace, 1) if pace and recovered > 1 else None
        ),
        "time_to_recover": hist.summary(status["recover_hist"]),
        "published": published["sent"],
        "acked": published["acked"],
        "expected": expected,
        "received": status["received"],
        "replayed": status["replayed"],
        "messages_lost": status["messages_lost"],
        "messages_duplicated": status["messages_duplicated"],
        "clients_with_loss": status["members_with_loss"],
        "out_of_order": status["out_of_order"],
        "server_counters": server,
        "cpu_cores": cpu,
        "cpu_kernel_cores": sampler.kernel,
        "cpu_seconds_wall": round(sampler.wall, 3),
        # the nodes' CPU from the fault until every client was back, per client recovered
        # (it includes serving the room's live traffic meanwhile)
        "server_cpu_ms_per_recovery": (
            round(server_cores({"cpu_cores": cpu}) * sampler.wall * 1000 / recovered, 2)
            if recovered
            else None
        ),
    }
    print(
        f"  W5 {stack} {fault}: {recovered}/{members} recovered in {result['recover_seconds']} s "
        f"({result['recovered_per_s']}/s), replayed {result['replayed']}, lost "
        f"{result['messages_lost']}, duplicated {result['messages_duplicated']}, out of order "
        f"{result['out_of_order']}, reconnect failures {result['reconnect_failures'] or 'none'}",
        flush=True,
    )
    return result


def w5_recovery(run: Run, stack: str) -> Json:
    """Clients in one room on node1, a steady publisher on node2; faults while it publishes."""
    s = run.settings
    window = f"{s.w5_recovery_window:g}"
    flags = {"recovery-window": window}
    if stack == "node":
        flags["adapter"] = "streams"
    with (
        run.cluster(stack, "w5", flags=flags) as cluster,
        run.pool(1 + s.w5_workers, f"w5-{stack}") as pool,
    ):
        publisher, receivers = pool[0], pool.workers[1:]
        node1, node2 = cluster.nodes[0], cluster.nodes[1]
        url = cluster.haproxy.url
        joined = pool.each(
            "members_join",
            [
                {
                    "url": url,
                    "count": n,
                    "room": ROOM,
                    "cookie": cluster.haproxy.cookie_for(node1),
                    "concurrency": max(1, s.w5_reconnect_concurrency // len(receivers)),
                    "reconnect_delay": s.w5_reconnect_delay,
                }
                for n in split(s.w5_clients, len(receivers))
            ],
            receivers,
        )
        failures: Counter[str] = Counter()
        for reply in joined:
            failures.update(reply["failures"])
        connected = sum(r["connected"] for r in joined)
        if not connected:
            raise BenchError(f"W5 {stack}: no client could connect: {dict(failures)}")
        connect(pool, [publisher], url, 1, 1, cookie=cluster.haproxy.cookie_for(node2))
        clients_per_node = {node.node_name: node.clients() for node in cluster.nodes}
        print(f"  W5 {stack}: {connected} clients, per node {clients_per_node}", flush=True)
        faults = []
        for index, fault in enumerate(s.w5_faults):
            faults.append(recovery_fault(run, cluster, pool, fault, 100 + index, stack))
    for item in faults:
        if stack == "wsk" and (item["messages_lost"] or item["messages_duplicated"]):
            run.note(
                f"W5 wsk {item['fault']}: {item['messages_lost']} messages lost and "
                f"{item['messages_duplicated']} duplicated: recovery broke its promise"
            )
    return {
        "stack": stack,
        "recovery_window": s.w5_recovery_window,
        "adapter": "redis-streams-adapter" if stack == "node" else "wsk stream",
        "node_log_problems": run.check_logs(cluster, f"W5 {stack}"),
        "connected": connected,
        "failures": dict(failures),
        "clients_per_node": clients_per_node,
        "faults": faults,
    }


def w6_variants(settings: Settings) -> list[Variant]:
    """Each stack as it is by default, and wsk once more without shard writes: every
    emit in the main stream, which every node reads (``--stream-shards no``)."""
    variants = default_variants(settings)
    if "wsk" in settings.stacks:
        variants.append(Variant("wsk-unsharded", "wsk", {"stream-shards": "no"}))
    return variants


def w6_scale(run: Run, variant: Variant) -> Json:
    """What a node pays for the rest of the cluster: node1's rooms are quiet, the others publish.

    For each cluster size, the CPU of node1 (none of its rooms gets a message: what it
    spends beyond idle is other nodes' traffic), of the publishing nodes (each delivers
    the same traffic of its own at every size) and of Redis.
    """
    s = run.settings
    stack = variant.stack
    rooms = [f"w6-{k}" for k in range(s.w6_rooms)]
    steps = []
    for count in s.w6_nodes:
        with (
            run.cluster(
                stack, f"w6-{count}", nodes=count, flags=variant.flags, variant=variant.name
            ) as cluster,
            run.pool(count, f"w6-{variant.name}-{count}") as pool,
        ):
            mine = [rooms[i::count] for i in range(count)]
            args = [
                {"url": node.url, "count": 1, "concurrency": 1, "rooms": mine[i]}
                for i, node in enumerate(cluster.nodes)
            ]
            joined = pool.each("connect", args, pool.workers)
            if sum(r["connected"] for r in joined) != count:
                raise BenchError(f"W6: not every node's client connected: {joined}")
            time.sleep(1.0)
            idle = Sampler({"node1": [cluster.nodes[0].pid]})
            time.sleep(min(2.0, s.w6_seconds))
            node1_idle = idle.stop()["node1"]
            groups = {node.node_name: [node.pid] for node in cluster.nodes}
            groups["redis"] = [run.redis.pid]
            sampler = Sampler(groups)
            publishers = pool.workers[1:]
            sent = pool.each(
                "publish",
                [
                    {
                        "rate": s.w6_rate_per_node,
                        "seconds": s.w6_seconds,
                        "room": None,
                        "rooms": mine[i],
                        "size": s.w6_payload,
                        "step": 0,
                    }
                    for i in range(1, count)
                ],
                publishers,
            )
            cpu = sampler.stop()
            expected = sum(r["sent"] for r in sent)
            replies, received = wait_received(pool, pool.workers, [0], expected, s.w1_drain_seconds)
            busy = [cpu[node.node_name] for node in cluster.nodes[1:]]
            seconds = max(r["seconds"] for r in sent)
            step = {
                "nodes": count,
                "cluster_publishes_per_s": round(expected / seconds, 1),
                "node1_cores": cpu["node1"],
                "node1_idle_cores": node1_idle,
                "publishing_node_cores": round(sum(busy) / len(busy), 4),
                "redis_cores": cpu["redis"],
                "sent": expected,
                "received": received,
                "node1_received": replies[0]["steps"]["0"]["received"],
                "log_problems": run.check_logs(cluster, f"W6 {count} nodes")["lines"],
            }
            print(
                f"  {variant.name:5} {count} nodes: "
                f"{step['cluster_publishes_per_s']:g} publishes/s, "
                f"node1 (quiet) {step['node1_cores']:.3f} cores (idle {node1_idle:.3f}), "
                f"publishing nodes {step['publishing_node_cores']:.3f} each, "
                f"Redis {step['redis_cores']:.3f}, received {received} of {expected}",
                flush=True,
            )
            steps.append(step)
    return {"stack": stack, "variant": variant.name, "flags": variant.flags, "steps": steps}
