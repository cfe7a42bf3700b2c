"""Turn a run's results into figures, a Markdown section and a PNG chart."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

Json = dict[str, Any]

STACK_NAMES = {"wsk": "wsk", "node": "Node"}
W5_FAULTS = {
    "drop": "every connection dropped",
    "kill": "kill -9 of their node",
}
DOC_HEADER = """\
# Benchmarks: wsk beside the Node.js socket.io cluster

Written by `python -m bench` (`make bench`); each section below is one run, replaced
when a run with the same label is made again. See `bench/README.md` for the method.
"""


def _get(data: Json | None, *path: str) -> Any:
    for key in path:
        if data is None:
            return None
        data = data.get(key)
    return data


def _by_stack(items: list[Json], **match: Any) -> dict[str, Json]:
    return {
        item["stack"]: item
        for item in items
        if all(item.get(key) == value for key, value in match.items())
    }


def figure(
    fid: str, workload: str, label: str, unit: str, better: str, wsk: Any, node: Any
) -> Json:
    """One compared figure: both absolute values and their ratio wsk/Node."""
    ratio = None
    if isinstance(wsk, int | float) and isinstance(node, int | float) and node:
        ratio = round(wsk / node, 3)
    return {
        "id": fid,
        "workload": workload,
        "label": label,
        "unit": unit,
        "better": better,
        "wsk": wsk,
        "node": node,
        "ratio": ratio,
    }


def server_cores(step: Json, field: str = "cpu_cores") -> float:
    """The CPU of a step's server processes (the nodes), in cores.

    ``field="cpu_kernel_cores"``: the part of it spent in the kernel.
    """
    return sum(v for k, v in step[field].items() if k.startswith("node"))


def cost_per_delivery(step: Json, field: str = "cpu_cores") -> float:
    """Microseconds of server CPU per message a step delivered.

    The CPU is sampled over the whole step (sending and the wait for late
    messages), so it is divided by every message received in that time.
    """
    wall = step.get("cpu_seconds_wall") or step["send_seconds"]
    cores = server_cores(step, field)
    return cores * wall * 1e6 / step["received"] if step["received"] else math.nan


def delivery_cost(
    run: Json | None, low: float, high: float, field: str = "cpu_cores"
) -> float | None:
    """Median server CPU microseconds per delivered message over the passing steps of a range.

    ``field="cpu_kernel_cores"``: the kernel's part of it (None for a run that did
    not record it).
    """
    if run is None:
        return None
    costs = sorted(
        cost_per_delivery(step, field)
        for step in run["steps"]
        if step["passed"]
        and low <= step["offered_per_s"] <= high
        and step["received"]
        and field in step
    )
    if not costs:
        return None
    middle = len(costs) // 2
    median = costs[middle] if len(costs) % 2 else (costs[middle - 1] + costs[middle]) / 2
    return round(median, 1)


def _variant(run: Json) -> str:
    """The name of the way a W1 run ran its stack (``wsk``, ``wsk-recovery-0``, ``node``)."""
    return str(run.get("variant", run["stack"]))


def _display(run: Json) -> str:
    """A W1 run's stack as the report names it: ``wsk``, ``wsk, recovery 0 s``, ``Node``."""
    name = STACK_NAMES[run["stack"]]
    window = run.get("recovery_window")
    if run["stack"] == "wsk" and window is not None:
        return f"{name}, recovery {window:g} s" if window else f"{name}, recovery off"
    return name


def w1_defaults(results: Json) -> list[Json]:
    """The W1 runs of each stack as it is by default: the ones compared wsk/Node."""
    return [run for run in results["w1"] if _variant(run) == run["stack"]]


def recovery_cost(results: Json) -> list[Json]:
    """wsk's W1 with recovery on beside recovery off: each figure, and the ratio on/off."""
    s = results["settings"]
    low, high = s["w1_cost_range"]
    bound = s.get("w1_recovery_max_cost", 1.15)
    rows = []
    for payload in s["w1_payloads"]:
        runs = [
            run
            for run in results["w1"]
            if run["stack"] == "wsk" and run["payload_bytes"] == payload
        ]
        on = next((r for r in runs if r.get("recovery_window")), None)
        off = next((r for r in runs if r.get("recovery_window") == 0), None)
        if on is None or off is None:
            continue
        for fid, label, unit, better, value in (
            (
                "max_delivered",
                "highest delivered msgs/s",
                "msgs/s",
                "higher",
                lambda r: _get(r, "max", "delivered_per_s"),
            ),
            (
                "p95_at_max",
                "p95 latency at that rate",
                "ms",
                "lower",
                lambda r: _get(r, "max", "latency", "p95_ms"),
            ),
            (
                "server_cpu_per_delivery",
                f"server CPU per delivered message at {low:,.0f} to {high:,.0f} msgs/s",
                "µs",
                "lower",
                lambda r: delivery_cost(r, low, high),
            ),
        ):
            a, b = value(on), value(off)
            ratio = round(a / b, 3) if isinstance(a, int | float) and b else None
            row = {
                "id": f"w1_{payload}_recovery_{fid}",
                "label": f"{label}, {payload} B",
                "unit": unit,
                "better": better,
                "recovery_window": on["recovery_window"],
                "on": a,
                "off": b,
                "ratio": ratio,
            }
            if fid == "server_cpu_per_delivery":
                row["bound"] = bound
                row["within_bound"] = None if ratio is None else ratio <= bound
            rows.append(row)
    return rows


def figures(results: Json) -> list[Json]:
    """The table of a run: every figure, both stacks, their ratio."""
    table = []
    for payload in results["settings"]["w1_payloads"]:
        runs = _by_stack(w1_defaults(results), payload_bytes=payload)
        table.append(
            figure(
                f"w1_{payload}_max_delivered",
                "W1",
                f"fan-out: highest delivered msgs/s, {payload} B",
                "msgs/s",
                "higher",
                *(_get(runs.get(s), "max", "delivered_per_s") for s in ("wsk", "node")),
            )
        )
        table.append(
            figure(
                f"w1_{payload}_p95_at_max",
                "W1",
                f"fan-out: p95 latency at that rate, {payload} B",
                "ms",
                "lower",
                *(_get(runs.get(s), "max", "latency", "p95_ms") for s in ("wsk", "node")),
            )
        )
        low, high = results["settings"]["w1_cost_range"]
        table.append(
            figure(
                f"w1_{payload}_server_cpu_per_delivery",
                "W1",
                f"fan-out: server CPU per delivered message at {low:,.0f} to {high:,.0f} "
                f"msgs/s, {payload} B",
                "µs",
                "lower",
                *(delivery_cost(runs.get(s), low, high) for s in ("wsk", "node")),
            )
        )
        table.append(
            figure(
                f"w1_{payload}_server_kernel_per_delivery",
                "W1",
                f"fan-out: of that, in the kernel (the nodes' system calls), {payload} B",
                "µs",
                "lower",
                *(
                    delivery_cost(runs.get(s), low, high, "cpu_kernel_cores")
                    for s in ("wsk", "node")
                ),
            )
        )
    w2 = _by_stack(results["w2"]["runs"])
    for rate in results["w2"]["rates"]:
        for pct in ("p50", "p99"):
            table.append(
                figure(
                    f"w2_{rate['label']}_{pct}",
                    "W2",
                    f"cross-node latency {pct}, {rate['publish_rate']:.3g} publishes/s "
                    f"({rate['label']})",
                    "ms",
                    "lower",
                    *(
                        _get(w2.get(s), "rates", rate["label"], "latency", f"{pct}_ms")
                        for s in ("wsk", "node")
                    ),
                )
            )
    w3 = _by_stack(results["w3"])

    def w3_mean(stack: str, key: str) -> float | None:
        nodes = _get(w3.get(stack), "nodes") or {}
        values = [n[key] for n in nodes.values() if n.get(key) is not None]
        return round(sum(values) / len(values), 1) if values else None

    def w3_sum(stack: str, key: str) -> float | None:
        nodes = _get(w3.get(stack), "nodes") or {}
        return round(sum(n[key] for n in nodes.values()), 4) if nodes else None

    table.append(
        figure(
            "w3_connected",
            "W3",
            f"idle websocket connections held (of {results['settings']['w3_connections']})",
            "connections",
            "higher",
            *(_get(w3.get(s), "still_open") for s in ("wsk", "node")),
        )
    )
    table.append(
        figure(
            "w3_rss_per_connection",
            "W3",
            "RSS per idle connection (mean of the nodes)",
            "KiB",
            "lower",
            *(
                None
                if (v := w3_mean(s, "rss_per_connection_bytes")) is None
                else round(v / 1024, 2)
                for s in ("wsk", "node")
            ),
        )
    )
    table.append(
        figure(
            "w3_idle_cpu",
            "W3",
            "idle CPU of all nodes holding them",
            "% of a core",
            "lower",
            *(
                None if (v := w3_sum(s, "idle_cpu_cores")) is None else round(v * 100, 2)
                for s in ("wsk", "node")
            ),
        )
    )
    w4 = _by_stack(results["w4"])
    for mode, name in (
        ("polling", "long-polling handshake + upgrade"),
        ("websocket", "websocket only"),
    ):
        table.append(
            figure(
                f"w4_{mode}_rate",
                "W4",
                f"connects/s, {name}",
                "connects/s",
                "higher",
                *(_get(w4.get(s), "modes", mode, "per_s") for s in ("wsk", "node")),
            )
        )
        table.append(
            figure(
                f"w4_{mode}_p99",
                "W4",
                f"connect time p99, {name}",
                "ms",
                "lower",
                *(_get(w4.get(s), "modes", mode, "latency", "p99_ms") for s in ("wsk", "node")),
            )
        )
        table.append(
            figure(
                f"w4_{mode}_server_cpu_per_connect",
                "W4",
                f"server CPU per connect, {name}",
                "ms",
                "lower",
                *(_get(w4.get(s), "modes", mode, "server_ms_per_connect") for s in ("wsk", "node")),
            )
        )
        table.append(
            figure(
                f"w4_{mode}_server_kernel_per_connect",
                "W4",
                f"of that, in the kernel, {name}",
                "ms",
                "lower",
                *(
                    _get(w4.get(s), "modes", mode, "server_kernel_ms_per_connect")
                    for s in ("wsk", "node")
                ),
            )
        )
        table.append(
            figure(
                f"w4_{mode}_failures",
                "W4",
                f"failed connects, {name}",
                "connects",
                "lower",
                *(_get(w4.get(s), "modes", mode, "failed") for s in ("wsk", "node")),
            )
        )
    w5 = {run["stack"]: {f["fault"]: f for f in run["faults"]} for run in results.get("w5", [])}
    # a run from before W5 (``--render``) has no W5 rows
    faults = results["settings"].get("w5_faults", []) if results.get("w5") else []
    for fault in faults:
        name = W5_FAULTS.get(fault, fault)
        for fid, label, unit, better, path in (
            ("recovered", "clients recovered", "clients", "higher", ("recovered",)),
            (
                "recovered_per_s",
                "clients recovered per second",
                "clients/s",
                "higher",
                ("recovered_per_s",),
            ),
            ("p99", "time to recover p99", "ms", "lower", ("time_to_recover", "p99_ms")),
            (
                "server_cpu",
                "server CPU per recovered client",
                "ms",
                "lower",
                ("server_cpu_ms_per_recovery",),
            ),
            ("lost", "messages lost", "messages", "lower", ("messages_lost",)),
            ("duplicated", "messages duplicated", "messages", "lower", ("messages_duplicated",)),
        ):
            clients = _get(w5.get("wsk", {}).get(fault), "clients")
            of = f" (of {clients})" if fid == "recovered" and clients else ""
            table.append(
                figure(
                    f"w5_{fault}_{fid}",
                    "W5",
                    f"recovery, {name}: {label}{of}",
                    unit,
                    better,
                    *(_get(w5.get(s, {}).get(fault), *path) for s in ("wsk", "node")),
                )
            )
    # the summary compares each stack as it is by default
    w6 = _by_stack([r for r in results.get("w6", []) if r.get("variant", r["stack"]) == r["stack"]])
    for count in results["settings"].get("w6_nodes", []) if w6 else []:
        at = {s: _w6_step(w6.get(s), count) for s in ("wsk", "node")}
        table.append(
            figure(
                f"w6_{count}_quiet_node",
                "W6",
                f"{count} nodes: CPU of the node whose rooms are quiet, beyond its idle CPU",
                "cores",
                "lower",
                *(_w6_quiet(at[s]) for s in ("wsk", "node")),
            )
        )
        table.append(
            figure(
                f"w6_{count}_redis",
                "W6",
                f"{count} nodes: Redis CPU",
                "cores",
                "lower",
                *(_get(at[s], "redis_cores") for s in ("wsk", "node")),
            )
        )
    table += _w7_figures(results)
    return table


def _w7_figures(results: Json) -> list[Json]:
    """W7's latencies at each rate, and the servers' CPU per delivery over the rates."""
    w7 = _by_stack(results.get("w7") or [])
    if not w7:
        return []
    table = []
    for rate in results["settings"]["w7_rates"]:
        at = {
            s: next((st for st in w7[s]["steps"] if st["publish_rate"] == rate), None)
            if s in w7
            else None
            for s in ("wsk", "node")
        }
        for pct in ("p50", "p99"):
            table.append(
                figure(
                    f"w7_{rate:g}_{pct}",
                    "W7",
                    f"socket.io-client receivers: {pct} latency at {rate:g} publishes/s",
                    "ms",
                    "lower",
                    *(_get(at[s], f"{pct}_ms") for s in ("wsk", "node")),
                )
            )
    for fid, key, label in (
        ("w7_server_cpu_per_delivery", "server_us_per_delivery", "server CPU per delivery"),
        (
            "w7_server_kernel_per_delivery",
            "server_kernel_us_per_delivery",
            "of that, in the kernel",
        ),
    ):
        table.append(
            figure(
                fid,
                "W7",
                f"socket.io-client receivers: {label}, median over the rates",
                "µs",
                "lower",
                *(
                    _median([st[key] for st in w7[s]["steps"]]) if s in w7 else None
                    for s in ("wsk", "node")
                ),
            )
        )
    return table


def _median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    middle = len(known) // 2
    return round(known[middle] if len(known) % 2 else (known[middle - 1] + known[middle]) / 2, 2)


def _w6_step(run: Json | None, count: int) -> Json | None:
    return next((st for st in (run or {}).get("steps", []) if st["nodes"] == count), None)


def _w6_quiet(step: Json | None) -> float | None:
    """What the quiet node spent on other nodes' traffic: its CPU less its idle CPU."""
    if step is None:
        return None
    return round(max(0.0, step["node1_cores"] - step["node1_idle_cores"]), 4)


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) < 10:
            return f"{value:,.2f}"
        if abs(value) < 1000:
            return f"{value:,.1f}"
        return f"{value:,.0f}"
    return str(value)


def _verdict(row: Json) -> str:
    ratio = row["ratio"]
    if ratio is None:
        return "even" if row["wsk"] is not None and row["wsk"] == row["node"] else ""
    if abs(ratio - 1) < 0.05:
        return "even"
    wsk_ahead = ratio > 1 if row["better"] == "higher" else ratio < 1
    return "wsk ahead" if wsk_ahead else "Node ahead"


def _cores(cpu: Json) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())


def markdown(results: Json, chart_name: str) -> str:
    """The Markdown section of one run."""
    m = results["machine"]
    s = results["settings"]
    py, nd = m["python"], m["node"]
    streams = (
        f" (W1 to W4), @socket.io/redis-streams-adapter "
        f"{nd['@socket.io/redis-streams-adapter']} (W5)"
        if nd.get("@socket.io/redis-streams-adapter")
        else ""
    )
    lines = [
        f"## {results['label']}: {results['started'][:16].replace('T', ' ')} UTC "
        f"({results['mode']} run, {results['duration_seconds'] / 60:.1f} min)",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
        f"kernel {m['kernel']}. Load average (1/5/15 min) before the run "
        f"{results['load_average']['before']}, after {results['load_average']['after']}; "
        f"processes outside the benchmark kept {results['background_cores']['before']} cores "
        f"busy just before it and {results['background_cores']['after']} just after (the "
        "`others` column of each step says how much during it).",
        "",
        f"Versions: wsk {py['wsk']}, python-socketio {py['python-socketio']}, python-engineio "
        f"{py['python-engineio']}, eventlet {py['eventlet']}, redis-py {py['redis']} on Python "
        f"{py['python']}; Node {nd['node']}, socket.io {nd.get('socket.io')}, engine.io "
        f"{nd.get('engine.io')}, @socket.io/redis-adapter {nd.get('@socket.io/redis-adapter')}"
        f"{streams}, "
        f"redis {nd.get('redis')}, ws {nd.get('ws')}; {m['redis_server'].split(' sha=')[0]}; "
        f"{m['haproxy'].split(' - ')[0]}. Load generator: Python {py['python']} with uvloop "
        f"{py['uvloop']}.",
        "",
        f"Both stacks: {s['nodes']} server processes"
        + (
            f" ({', '.join(str(n) for n in s['w6_nodes'])} in W6)"
            if results.get("w6") and "w6_nodes" in s
            else ""
        )
        + f", pingInterval {s['ping_interval']:g} s, "
        f"pingTimeout {s['ping_timeout']:g} s, heartbeat every {s['heartbeat_interval']:g} s "
        "(out of the way), compression off, one Redis and one HAProxy configuration.",
        "",
        *(
            [f"Settings changed for this run (`--set`): {', '.join(results['overrides'])}.", ""]
            if results.get("overrides")
            else []
        ),
        f"![wsk/Node ratios and the W1 ramp]({chart_name})",
        "",
        "| workload | figure | wsk | Node | wsk/Node | |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in results["figures"]:
        if row["wsk"] is None and row["node"] is None:
            continue  # a workload this run did not measure (--workloads)
        arrow = "higher is better" if row["better"] == "higher" else "lower is better"
        lines.append(
            f"| {row['workload']} | {row['label']} ({row['unit']}, {arrow}) | "
            f"{_num(row['wsk'], row['unit'])} | {_num(row['node'], row['unit'])} | "
            f"{_num(row['ratio'])} | {_verdict(row)} |"
        )
    lines += _recovery_cost_table(results)
    lines += ["", "### Details", ""]
    # each workload's details only when the run measured it (--workloads)
    lines += _w1_details(results) if results["w1"] else []
    lines += _w2_details(results) if results["w2"]["runs"] else []
    lines += _w3_details(results) if results["w3"] else []
    lines += _w4_details(results) if results["w4"] else []
    lines += _w5_details(results)
    lines += _w6_details(results)
    lines += _w7_details(results)
    if results.get("notes"):
        lines += ["#### Notes and limits hit", ""]
        lines += [f"- {note}" for note in results["notes"]]
        lines.append("")
    if results.get("profile"):
        lines += _profile_details(results["profile"])
    return "\n".join(lines).rstrip() + "\n"


def _w1_details(results: Json) -> list[str]:
    s = results["settings"]
    lines = [
        f"#### W1 fan-out: {s['w1_clients']} clients in one room through HAProxy, one publisher",
        "",
        f"Steps of {s['w1_step_seconds']:g} s, publish rate x{s['w1_factor']:g} per step; a step "
        f"passes when at least {s['w1_min_delivery']:.0%} of the messages arrive within "
        f"{s['w1_drain_seconds']:g} s of the last send and the p95 latency, of the whole step "
        f"and of its last third alike, is under {s['w1_max_p95_ms']:g} ms. CPU in cores "
        "(1.00 = one core busy) per process group: `generator` is the receiving "
        "load-generator processes, `machine` the whole machine, `others` what processes "
        "outside the benchmark used.",
        "",
        "| stack | payload | publishes/s | offered msgs/s | delivered msgs/s | arrived | p50 ms "
        "| p95 ms | p99 ms | p95 of the last third, ms | CPU (cores) | |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for run in results["w1"]:
        for step in run["steps"]:
            lat = step["latency"]
            lines.append(
                f"| {_display(run)} | {run['payload_bytes']} B | "
                f"{_num(step['publish_rate'])} | {_num(step['offered_per_s'])} | "
                f"{_num(step['delivered_per_s'])} | {step['delivery']:.2%} | "
                f"{_num(lat['p50_ms'], 'ms')} | {_num(lat['p95_ms'], 'ms')} | "
                f"{_num(lat['p99_ms'], 'ms')} | "
                f"{_num(_get(step, 'tail_latency', 'p95_ms'), 'ms')} | "
                f"{_cores(step['cpu_cores'])} | {'pass' if step['passed'] else 'fail'} |"
            )
    lines.append("")
    for run in results["w1"]:
        lines.append(
            f"- {_display(run)}, {run['payload_bytes']} B: "
            f"{run['receivers']['connected']} receivers connected "
            f"(clients per node: {run['clients_per_node']}), "
            f"failures {run['receivers']['failures'] or 'none'}."
        )
    lines.append("")
    return lines


def _w2_details(results: Json) -> list[str]:
    lines = [
        "#### W2 cross-node latency: publisher on node1, receivers on node2 (HAProxy's cookie)",
        "",
        results["w2"]["how"],
        "",
        "| stack | rate | publishes/s | arrived | p50 ms | p95 ms | p99 ms | CPU (cores) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in results["w2"]["runs"]:
        for label, step in run["rates"].items():
            lat = step["latency"]
            lines.append(
                f"| {STACK_NAMES[run['stack']]} | {label} | {_num(step['publish_rate'])} | "
                f"{step['delivery']:.2%} | {_num(lat['p50_ms'], 'ms')} | "
                f"{_num(lat['p95_ms'], 'ms')} | {_num(lat['p99_ms'], 'ms')} | "
                f"{_cores(step['cpu_cores'])} |"
            )
    lines.append("")
    for run in results["w2"]["runs"]:
        lines.append(
            f"- {STACK_NAMES[run['stack']]}: {run['receivers']['connected']} receivers; "
            f"clients per node {run['clients_per_node']}."
        )
    lines.append("")
    return lines


def _w3_details(results: Json) -> list[str]:
    lines = [
        "#### W3 idle capacity: websocket connections through HAProxy, then idle",
        "",
        "| stack | node | clients | RSS before | RSS after | RSS per connection | idle CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in results["w3"]:
        for name, node in run["nodes"].items():
            per = node["rss_per_connection_bytes"]
            lines.append(
                f"| {STACK_NAMES[run['stack']]} | {name} | {_num(node['clients'])} | "
                f"{node['rss_before_bytes'] / 2**20:.1f} MiB | "
                f"{node['rss_after_bytes'] / 2**20:.1f} MiB | "
                f"{'n/a' if per is None else f'{per / 1024:.1f} KiB'} | "
                f"{node['idle_cpu_cores'] * 100:.2f}% |"
            )
    lines.append("")
    for run in results["w3"]:
        lines.append(
            f"- {STACK_NAMES[run['stack']]}: {run['connected']} of {run['wanted']} connected in "
            f"{run['ramp_seconds']} s ({run['haproxy_processes']} HAProxy processes, "
            f"{run['haproxy_rss_bytes'] / 2**20:.0f} MiB), {run['still_open']} still open "
            f"after the idle period; failures {run['failures'] or 'none'}; idle CPU (cores) "
            f"{_cores(run['idle_cpu_cores'])}."
        )
    lines.append("")
    return lines


def _w4_details(results: Json) -> list[str]:
    s = results["settings"]
    lines = [
        f"#### W4 connect rate: {s['w4_concurrency']} connects at a time for {s['w4_seconds']:g} s "
        "per mode, through HAProxy",
        "",
        "| stack | mode | connects/s | completed | failed | p50 ms | p99 ms | server ms per "
        "connect | of it in the kernel | CPU (cores) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in results["w4"]:
        for mode, res in run["modes"].items():
            lat = res["latency"]
            lines.append(
                f"| {STACK_NAMES[run['stack']]} | {mode} | {_num(res['per_s'])} | "
                f"{_num(res['completed'])} | {_num(res['failed'])} | {_num(lat['p50_ms'], 'ms')} | "
                f"{_num(lat['p99_ms'], 'ms')} | {_num(res.get('server_ms_per_connect'))} | "
                f"{_num(res.get('server_kernel_ms_per_connect'))} | {_cores(res['cpu_cores'])} |"
            )
    lines.append("")
    return lines + _parser_lines(results)


def _parser_lines(results: Json) -> list[str]:
    """What parsing the upgrade request costs, against wsk's server CPU per websocket connect."""
    costs = results.get("w4_parser")
    if not costs:
        return []
    per_connect = _get(_by_stack(results["w4"]).get("wsk"), "modes", "websocket")
    connect_us = (per_connect or {}).get("server_ms_per_connect")
    lines = [
        "HTTP parsing of a websocket connect's request, measured in the benchmark's process "
        "(`bench/parsecost.py`; CPU µs per request, the best of 5 rounds): Python's "
        "`http.server` and `email`, as a wsk node parses with eventlet, against httptools, the "
        "C parser uvicorn uses.",
        "",
        "| request | http.server µs | httptools µs | share of a wsk websocket connect, "
        "http.server | httptools would save |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, cost in costs.items():
        stdlib, fast = cost["stdlib_us"], cost["httptools_us"]
        share = save = "n/a"
        if connect_us:
            share = f"{stdlib / (connect_us * 1000):.1%}"
            save = f"{(stdlib - fast) / (connect_us * 1000):.1%}"
        lines.append(f"| {name} | {stdlib:g} | {fast:g} | {share} | {save} |")
    lines.append("")
    return lines


def _recovery_cost_table(results: Json) -> list[str]:
    rows = results.get("recovery_cost") or recovery_cost(results)
    if not rows:
        return []
    window = rows[0]["recovery_window"]
    lines = [
        "",
        f"#### W1: wsk with recovery on (`--recovery-window {window:g}`) and off (`0`)",
        "",
        "The same W1, in the same run, on two wsk clusters side by side (each its own nodes, "
        "HAProxy and channel), taking their steps in turns with Node's. Recovery on puts an "
        "offset on every event, keeps every session in Redis and the stream long enough to "
        "replay it.",
        "",
        "| figure | recovery on | recovery off | on/off | |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        arrow = "higher is better" if row["better"] == "higher" else "lower is better"
        verdict = ""
        if "bound" in row and row["within_bound"] is not None:
            over = (row["ratio"] - 1) * 100
            verdict = (
                f"{over:+.1f}%: within the bound of +{(row['bound'] - 1) * 100:.0f}%"
                if row["within_bound"]
                else f"{over:+.1f}%: OVER the bound of +{(row['bound'] - 1) * 100:.0f}%"
            )
        lines.append(
            f"| {row['label']} ({row['unit']}, {arrow}) | {_num(row['on'])} | "
            f"{_num(row['off'])} | {_num(row['ratio'])} | {verdict} |"
        )
    return lines


def _counter_name(sample: str) -> str:
    """``wsk_recoveries_total{reason="",result="succeeded"}`` as ``recoveries succeeded``."""
    name = sample.split("{")[0].removeprefix("wsk_").removesuffix("_total")
    labels = [value for value in re.findall(r'="([^"]*)"', sample) if value]
    return " ".join([name, *sorted(labels, key=lambda v: v not in ("succeeded", "failed"))])


def _w5_details(results: Json) -> list[str]:
    runs = results.get("w5") or []
    if not runs:
        return []
    s = results["settings"]
    lines = [
        f"#### W5 recovery: {s['w5_clients']} clients in one room on node1, a publisher on "
        f"node2 at {s['w5_rate']:g} publishes/s",
        "",
        "Lean clients that speak the recovery handshake as socket.io-client 4.6+ does: they keep "
        "the `pid` of the CONNECT answer and the offset that ends each event, and reconnect by "
        f"themselves (up to {s['w5_reconnect_delay']:g} s after the loss, at most "
        f"{s['w5_reconnect_concurrency']} at a time) with `{{pid, offset}}` in the CONNECT auth; "
        "recovered means the answer carried the same `pid`. A client that was not recovered "
        "joins the room again. Faults, while messages keep flowing: `drop`, every connection "
        "broken at once by the clients (no close frame; the node lives), then `kill`, kill -9 "
        "of node1 (HAProxy sends them to node2; `lost the connection` counts the clients it "
        "held). Recovered per second: the clients recovered "
        "over the time from the first reconnect attempt to the last client back; `after the "
        "first`: from the first client back to the last. Replayed: messages a client got on "
        "its new connection that were sent before its CONNECT answer. Lost and duplicated: "
        "over every client and every published message. Node runs socket.io with "
        "`connectionStateRecovery` and `@socket.io/redis-streams-adapter`, which writes a "
        "session to Redis only when its node sees the client leave.",
        "",
        "| stack | fault | lost the connection | recovered | not recovered | recovered/s | "
        "after the first, /s | p50 ms | p99 ms | server CPU per recovery, ms | published | "
        "replayed | lost | duplicated | out of order | server counters |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
        "---: | ---: | ---: | --- |",
    ]
    for run in runs:
        for f in run["faults"]:
            t = f["time_to_recover"]
            counters = (
                ", ".join(f"{_counter_name(k)} {v:,}" for k, v in f["server_counters"].items() if v)
                or "n/a"
            )
            lines.append(
                f"| {STACK_NAMES[run['stack']]} | {f['fault']} | {_num(f['lost_connection'])} | "
                f"{_num(f['recovered'])} | "
                f"{_num(f['not_recovered'])} | {_num(f['recovered_per_s'])} | "
                f"{_num(f.get('recovered_per_s_after_first'))} | {_num(t['p50_ms'])} | "
                f"{_num(t['p99_ms'])} | {_num(f.get('server_cpu_ms_per_recovery'))} | "
                f"{_num(f['published'])} | {_num(f['replayed'])} | "
                f"{_num(f['messages_lost'])} | {_num(f['messages_duplicated'])} | "
                f"{_num(f['out_of_order'])} | {counters} |"
            )
    lines.append("")
    for run in runs:
        lines.append(
            f"- {STACK_NAMES[run['stack']]}: {run['connected']} clients "
            f"(per node {run['clients_per_node']}), recovery window "
            f"{run['recovery_window']:g} s, {run['adapter']}; clients per node at each fault "
            + "; ".join(f"{f['fault']} {f.get('clients_per_node', 'n/a')}" for f in run["faults"])
            + "; connect failures "
            f"{run['failures'] or 'none'}; reconnect failures "
            + "; ".join(f"{f['fault']} {f['reconnect_failures'] or 'none'}" for f in run["faults"])
            + "."
        )
    lines.append("")
    return lines


def _profile_details(profile: Json) -> list[str]:
    summary = profile["summary"]
    step = profile["step"]
    lines = [
        f"#### py-spy profile of a wsk node during W1 ({profile['payload_bytes']} B at "
        f"{profile['rate']:g} publishes/s, {summary['samples']} samples)",
        "",
        f"That step delivered {_num(step['delivered_per_s'])} msgs/s ({step['delivery']:.2%} "
        f"arrived, p95 {_num(step['latency']['p95_ms'], 'ms')} ms) while sampled. Flame graph of "
        f"the other node: [{profile['flamegraph']}]({profile['flamegraph']}).",
        "",
        "| own time by package | share |",
        "| --- | ---: |",
    ]
    lines += [f"| {row['name']} | {row['share']:.1%} |" for row in summary["packages"][:12]]
    lines += ["", "| function (own time) | share |", "| --- | ---: |"]
    lines += [f"| `{row['name']}` | {row['share']:.1%} |" for row in summary["own"][:15]]
    lines += ["", "| function (inclusive time) | share |", "| --- | ---: |"]
    lines += [f"| `{row['name']}` | {row['share']:.1%} |" for row in summary["inclusive"][:20]]
    lines.append("")
    return lines


def update_document(path: Path, label: str, section: str) -> None:
    """Put ``section`` into the Markdown document at ``path``, replacing the same label's."""
    begin, end = f"<!-- bench:{label}:begin -->", f"<!-- bench:{label}:end -->"
    block = f"{begin}\n{section}{end}\n"
    text = path.read_text() if path.exists() else DOC_HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def chart(results: Json, path: Path) -> None:
    """A PNG: each figure's ratio wsk/Node; W1's p95 latency and server CPU per delivery."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    rows = [r for r in results["figures"] if r["ratio"] is not None and r["ratio"] > 0]
    fig = plt.figure(figsize=(16, max(7.0, 0.38 * len(rows) + 1.5)))
    grid = fig.add_gridspec(2, 2, width_ratios=[3, 2])
    bars = fig.add_subplot(grid[:, 0])
    latency = fig.add_subplot(grid[0, 1])
    cost = fig.add_subplot(grid[1, 1], sharex=latency)

    labels = [f"{r['workload']} {r['label']} ({r['better']} is better)" for r in rows]
    ratios = [r["ratio"] for r in rows]
    palette = {"wsk ahead": "#2a9d8f", "Node ahead": "#e76f51", "even": "#9e9e9e"}
    colours = [palette[_verdict(r)] for r in rows]
    positions = list(range(len(rows)))[::-1]
    bars.barh(positions, ratios, color=colours)
    bars.set_xscale("log")
    _plain_log_ticks(bars.xaxis, ticker)
    bars.xaxis.set_major_locator(ticker.LogLocator(base=2))
    bars.axvline(1.0, color="black", linewidth=1)
    bars.set_yticks(positions, labels, fontsize=8)
    for y, ratio in zip(positions, ratios, strict=True):
        bars.text(ratio, y, f" {ratio:.2f}", va="center", fontsize=8)
    bars.set_xlabel("wsk / Node (log scale; green: wsk ahead, red: Node ahead, grey: within 5%)")
    bars.set_title(f"wsk / Node, same run ({results['label']}, {results['mode']})")

    styles = {"wsk": "-", "node": "--"}
    off_style = ":"
    for run in results["w1"]:
        steps = sorted(run["steps"], key=lambda st: st["publish_rate"])
        offered = [st["offered_per_s"] for st in steps]
        name = f"{_display(run)} {run['payload_bytes']} B"
        p95 = [st["latency"]["p95_ms"] or float("nan") for st in steps]
        style = off_style if _variant(run) != run["stack"] else styles[run["stack"]]
        (line,) = latency.plot(offered, p95, style, marker="o", label=name)
        failed = [(o, v) for o, v, st in zip(offered, p95, steps, strict=True) if not st["passed"]]
        if failed:
            latency.scatter(*zip(*failed, strict=True), marker="x", s=80, color=line.get_color())
        per_delivery = [cost_per_delivery(st) for st in steps]
        cost.plot(offered, per_delivery, style, marker="o", label=name)
    limit = results["settings"]["w1_max_p95_ms"]
    latency.axhline(limit, color="black", linewidth=1, linestyle=":")
    latency.set_ylabel("p95 latency, ms")
    latency.set_title(f"W1 fan-out ramp (x: step failed; dotted: {limit:g} ms)")
    cost.set_ylabel("server CPU per delivery, µs")
    cost.set_xlabel("offered msgs/s (publishes/s x receivers)")
    cost.set_title("W1: CPU of both nodes per delivered message")
    for axes in (latency, cost):
        axes.set_xscale("log")
        axes.set_yscale("log")
        _plain_log_ticks(axes.xaxis, ticker)
        _plain_log_ticks(axes.yaxis, ticker)
        axes.grid(True, which="both", alpha=0.3)
        if results["w1"]:
            axes.legend(fontsize=8)
        else:
            axes.text(0.5, 0.5, "W1 not run", ha="center", transform=axes.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plain_log_ticks(axis: Any, ticker: Any) -> None:
    """Plain numbers (0.5, 2, 1,000) on a logarithmic axis, not powers of ten."""
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.10g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _w6_details(results: Json) -> list[str]:
    runs = results.get("w6") or []
    if not runs:
        return []
    s = results["settings"]
    lines = [
        f"#### W6 scale with the cluster: {s['w6_rooms']} rooms, each with its member on one "
        f"node, every node but node1 publishing {s['w6_rate_per_node']:g} a second into its "
        "own rooms",
        "",
        "Room k is on node k mod N, where one client is in every room of its node and "
        "publishes into them in turn; node1's client publishes nothing, so none of node1's "
        "rooms gets a message and its CPU beyond idle is what the rest of the cluster's "
        "traffic costs it. Clients connect to their node directly (no HAProxy). Cores are "
        "shares of one core. wsk-unsharded is wsk with `--stream-shards no`: every emit "
        "in the main stream, which every node reads, as before the stream had shards.",
        "",
        "| stack | nodes | cluster publishes/s | node1 (quiet) | node1 idle | publishing node, "
        "each | Redis | received |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        for st in run["steps"]:
            lines.append(
                f"| {run.get('variant', run['stack'])} | {st['nodes']} | "
                f"{st['cluster_publishes_per_s']:,.0f} | "
                f"{st['node1_cores']:.3f} | {st['node1_idle_cores']:.3f} | "
                f"{st['publishing_node_cores']:.3f} | {st['redis_cores']:.3f} | "
                f"{st['received']:,} of {st['sent']:,} |"
            )
    lines.append("")
    return lines


def _w7_details(results: Json) -> list[str]:
    runs = results.get("w7") or []
    if not runs:
        return []
    s = results["settings"]
    lines = [
        f"#### W7 fan-out with socket.io-client: {s['w7_receivers']} receivers in one room "
        f"through HAProxy, one publisher, {s['w7_payload']} B",
        "",
        "The generator is `bench/node/generator.js`, one Node process of socket.io-client "
        "websocket clients (not the benchmark's own lean clients); each receiver times every "
        f"message from its send. One step of {s['w7_seconds']:g} s per rate, the stacks in "
        "turns. Server CPU is both nodes' (of which the kernel's), per delivered message.",
        "",
        "| stack | publishes/s | offered msgs/s | arrived | p50 ms | p95 ms | p99 ms | "
        "server µs per delivery | of it in the kernel | CPU (cores) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in runs:
        for st in run["steps"]:
            lines.append(
                f"| {STACK_NAMES[run['stack']]} | {st['publish_rate']:g} | "
                f"{st['offered_per_s']:,.0f} | {st['delivery']:.2%} | "
                f"{_num(st['p50_ms'])} | {_num(st['p95_ms'])} | {_num(st['p99_ms'])} | "
                f"{_num(st['server_us_per_delivery'])} | "
                f"{_num(st['server_kernel_us_per_delivery'])} | {_cores(st['cpu_cores'])} |"
            )
    lines.append("")
    return lines
