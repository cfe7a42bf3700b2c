"""``python -m bench``: measure wsk and the Node reference in one run, write the results."""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import machine, report
from bench.outside import w7_outside
from bench.parsecost import parse_costs
from bench.procs import FAILURES, NODE_DIR, ROOT, BenchError, RedisServer, require
from bench.profile import summarize
from bench.settings import MODES, Settings, override
from bench.workers import background_cores
from bench.workloads import (
    Run,
    profile_wsk,
    w1_fan_out,
    w2_latency,
    w3_idle,
    w4_connect_rate,
    w5_recovery,
    w6_scale,
    w6_variants,
)

WORKLOADS = ("w1", "w2", "w3", "w4", "w5", "w6", "w7")
QUIET_CORES = 0.25
QUIET_SAMPLE_SECONDS = 3.0
SCHEMA = 1

Json = dict[str, Any]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark wsk beside the Node.js socket.io + Redis adapter cluster, "
        "in one run on this machine, and write the results.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a run of seconds with tiny counts (for the tests)"
    )
    parser.add_argument(
        "--label",
        help="the name of this run's section in benchmarks.md and of its files "
        "(default: latest, or smoke with --smoke)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs",
        help="directory for benchmarks.md, benchmarks-LABEL.json/.png (default: docs/)",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help="comma-separated subset of w1,w2,w3,w4,w5,w6,w7 (default: all)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        dest="overrides",
        help="change one of the run's settings (bench/settings.py), e.g. --set w5_clients=2000 "
        "or --set w1_payloads=100; recorded with the results; may be repeated",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy on a wsk node")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for other processes to leave the machine nearly idle "
        f"(under {QUIET_CORES} cores busy)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: write the Markdown section and the chart of a results file again",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the work directory with every process' log"
    )
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if args.label is None:
        args.label = "smoke" if args.smoke else "latest"
    try:
        args.settings = override(MODES["smoke" if args.smoke else "full"], args.overrides)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def raise_descriptor_limit(notes: list[str]) -> tuple[int, int]:
    """Raise the soft limit on open files to the hard one, for this run and its children."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print(f"raised the open-files limit from {soft} to {hard} (the hard limit)", flush=True)
    notes.append(
        f"Every process may open at most {hard} files (the machine's hard limit); the "
        "run raised its soft limit to that."
    )
    return soft, hard


def check_tools() -> None:
    for program in ("redis-server", "haproxy", "node"):
        require(program)
    if not (NODE_DIR / "node_modules").is_dir():
        raise BenchError(f"the Node reference is not installed: npm ci --prefix {NODE_DIR}")


def order(stacks: Sequence[str], index: int) -> list[str]:
    """The stacks in turns: which goes first alternates from one workload to the next."""
    return list(stacks) if index % 2 == 0 else list(reversed(stacks))


def highest_rate(w1: list[Json], stack: str, payload: int) -> float | None:
    """The highest passing W1 publish rate of ``stack`` as it is by default."""
    for item in w1:
        default = item.get("variant", item["stack"]) == item["stack"]
        if default and item["stack"] == stack and item["payload_bytes"] == payload and item["max"]:
            return float(item["max"]["publish_rate"])
    return None


def run_workloads(run: Run, args: argparse.Namespace, results: Json) -> None:
    s = run.settings
    stacks = s.stacks
    turn = 0
    if "w1" in args.workloads:
        for payload in s.w1_payloads:
            print(f"W1 fan-out, {payload} B", flush=True)
            results["w1"] += w1_fan_out(run, payload)
    if "w2" in args.workloads:
        rates = [("low", s.w2_low_rate)]
        payload = s.w1_payloads[0]
        maxima = [highest_rate(results["w1"], stack, payload) for stack in stacks]
        if all(m is not None for m in maxima):
            half = min(m for m in maxima if m is not None) / 2
            rates.append(("half", round(half, 3)))
            how = (
                f"{max(1, s.w1_clients // 2)} receivers on node2 (as many as one node held in "
                f"W1), {payload} B. `low` is {s.w2_low_rate:g} publishes/s; `half` is half the "
                f"lower of the two stacks' highest passing W1 publish rates ({payload} B), the "
                "same absolute rate for both stacks: node2 then delivers half of what each node "
                "delivered at the lower W1 maximum."
            )
        else:
            how = "W1 found no passing rate for both stacks, so only the low rate was measured."
            run.note("W2: no half-of-W1 rate (W1 was not run or found no passing rate)")
        results["w2"]["rates"] = [{"label": label, "publish_rate": rate} for label, rate in rates]
        results["w2"]["how"] = how
        print("W2 cross-node latency", flush=True)
        results["w2"]["runs"] = w2_latency(run, rates)
    if "w3" in args.workloads:
        for stack in order(stacks, turn):
            print(f"W3 idle capacity, {stack}", flush=True)
            results["w3"].append(w3_idle(run, stack))
        turn += 1
    if "w4" in args.workloads:
        print("W4 connect rate", flush=True)
        results["w4"] = w4_connect_rate(run)
        results["w4_parser"] = parse_costs()
        turn += 1
    if "w5" in args.workloads:
        for stack in order(stacks, turn):
            print(f"W5 recovery, {stack}", flush=True)
            results["w5"].append(w5_recovery(run, stack))
        turn += 1
    if "w6" in args.workloads:
        variants = w6_variants(run.settings)
        for stack in order(stacks, turn):
            for variant in (v for v in variants if v.stack == stack):
                print(f"W6 scale with the cluster, {variant.name}", flush=True)
                results["w6"].append(w6_scale(run, variant))
    if "w7" in args.workloads:
        print("W7 fan-out with socket.io-client as the generator", flush=True)
        results["w7"] = w7_outside(run)


def run_profile(run: Run, results: Json, out: Path, label: str) -> None:
    payload = run.settings.w1_payloads[0]
    rate = run.settings.profile_rate or highest_rate(results["w1"], "wsk", payload)
    if rate is None:
        run.note("profile skipped: W1 found no passing rate for wsk")
        return
    raw = run.workdir / "profile-node1.txt"
    svg_name = f"benchmarks-{label}-profile.svg"
    print(f"py-spy on a wsk node during W1 at {rate:g} publishes/s", flush=True)
    profiled = profile_wsk(run, rate, payload, raw, out / svg_name)
    profiled["summary"] = summarize(raw)
    profiled["flamegraph"] = svg_name
    results["profile"] = profiled


def wait_quiet(limit: float) -> float:
    """Wait up to ``limit`` seconds for the machine to be nearly idle; how busy it was last."""
    deadline = time.monotonic() + limit
    while True:
        busy = background_cores(QUIET_SAMPLE_SECONDS)
        if busy < QUIET_CORES or time.monotonic() >= deadline:
            return busy
        print(f"the machine is busy ({busy} cores); waiting for it to quieten", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; write benchmarks.md, benchmarks-LABEL.json and .png in ``--out``."""
    args = parse_args(argv)
    if args.render is not None:
        results = json.loads(args.render.read_text())
        # settings added since that run only shape the report: take today's defaults
        current = MODES[results["mode"]].as_dict()
        results["settings"] = {**current, **results["settings"]}
        args.out.mkdir(parents=True, exist_ok=True)
        write_results(results, args.out)
        return 0
    settings: Settings = args.settings
    notes: list[str] = []
    try:
        check_tools()
    except FAILURES as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    raise_descriptor_limit(notes)
    started = datetime.datetime.now(datetime.UTC)
    clock = time.monotonic()
    background = wait_quiet(args.wait_quiet)
    load_before = machine.load_average()
    print(
        f"load average before the run: {load_before}; other processes kept {background} cores busy",
        flush=True,
    )
    results: Json = {
        "schema": SCHEMA,
        "label": args.label,
        "mode": settings.mode,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "settings": settings.as_dict(),
        "w1": [],
        "w2": {"rates": [], "how": "", "runs": []},
        "w3": [],
        "w4": [],
        "w5": [],
        "w6": [],
        "w7": [],
        "w4_parser": None,
        "overrides": args.overrides,
        "profile": None,
    }
    workdir = Path(tempfile.mkdtemp(prefix="wsk-bench-"))
    args.out.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(workdir).start()
    run = Run(settings, workdir, redis, notes)
    ok = False
    try:
        run_workloads(run, args, results)
        if not args.no_profile and settings.profile_seconds > 0 and results["w1"]:
            run_profile(run, results, args.out, args.label)
        ok = True
    except FAILURES as exc:
        print(f"bench: {exc}\nlogs in {workdir}", file=sys.stderr)
        return 1
    finally:
        redis.stop()
        if ok and not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
        elif ok:
            print(f"logs kept in {workdir}")
    results["load_average"] = {"before": load_before, "after": machine.load_average()}
    results["background_cores"] = {
        "before": background,
        "after": background_cores(QUIET_SAMPLE_SECONDS),
    }
    results["duration_seconds"] = round(time.monotonic() - clock, 1)
    results["notes"] = notes
    write_results(results, args.out)
    return 0


def write_results(results: Json, out: Path) -> None:
    """Compute the figures; write the JSON, the chart and the section of benchmarks.md."""
    label = results["label"]
    results["figures"] = report.figures(results)
    results["recovery_cost"] = report.recovery_cost(results)
    json_path = out / f"benchmarks-{label}.json"
    png_path = out / f"benchmarks-{label}.png"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    report.chart(results, png_path)
    report.update_document(out / "benchmarks.md", label, report.markdown(results, png_path.name))
    print(f"wrote {json_path}, {png_path} and {out / 'benchmarks.md'}", flush=True)
    for row in results["figures"]:
        print(
            f"  {row['workload']} {row['label']}: wsk {row['wsk']} Node {row['node']} "
            f"ratio {row['ratio']}"
        )
    for row in results["recovery_cost"]:
        print(
            f"  W1 wsk recovery on/off, {row['label']}: on {row['on']} off {row['off']} "
            f"ratio {row['ratio']}"
            + (f" (bound {row['bound']}: within {row['within_bound']})" if "bound" in row else "")
        )
