"""A smoke run of the benchmark produces a well-formed result (the figures are not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.cli import WORKLOADS
from bench.procs import ROOT
from bench.settings import SMOKE

SMOKE_TIMEOUT = 150


def test_a_smoke_run_writes_well_formed_results(tmp_path: Path) -> None:
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((tmp_path / "benchmarks-smoke.json").read_text())
    assert results["mode"] == "smoke"
    assert results["label"] == "smoke"
    for key in ("cpu", "cores", "kernel", "python", "node", "redis_server", "haproxy"):
        assert results["machine"][key], key
    assert len(results["load_average"]["before"]) == 3
    for workload in WORKLOADS:
        assert results[workload], workload
    stacks = set(SMOKE.stacks)
    assert {run["stack"] for run in results["w1"]} == stacks
    assert {run["stack"] for run in results["w2"]["runs"]} == stacks
    assert {run["stack"] for run in results["w3"]} == stacks
    assert {run["stack"] for run in results["w4"]} == stacks
    assert {run["stack"] for run in results["w5"]} == stacks
    assert {run["stack"] for run in results["w6"]} == stacks
    assert {run["stack"] for run in results["w7"]} == stacks

    # W1 ran wsk once per recovery window, each beside Node's
    windows = {run["recovery_window"] for run in results["w1"] if run["stack"] == "wsk"}
    assert windows == set(SMOKE.w1_recovery_windows)
    # every W1 step says what the nodes spent in the kernel, a part of their CPU
    for run in results["w1"]:
        for step in run["steps"]:
            for name, kernel in step["cpu_kernel_cores"].items():
                assert 0 <= kernel <= step["cpu_cores"][name] + 0.01, (name, step)
            assert {n for n in step["cpu_kernel_cores"] if n.startswith("node")} == {
                n for n in step["cpu_cores"] if n.startswith("node")
            }, step
    on_off = {row["id"]: row for row in results["recovery_cost"]}
    assert "w1_100_recovery_max_delivered" in on_off
    for row in on_off.values():
        if row["ratio"] is not None:
            assert row["ratio"] == round(row["on"] / row["off"], 3), row

    # W5: every wsk client came back with its session and every message, once
    for run in results["w5"]:
        assert [f["fault"] for f in run["faults"]] == list(SMOKE.w5_faults)
        for fault in run["faults"]:
            assert fault["clients"] == SMOKE.w5_clients, fault
            # every client that lost its connection came back (HAProxy may have sent one
            # to node2 at the drop, which the kill of node1 then leaves alone)
            assert fault["back"] == fault["lost_connection"] > 0, fault
            if fault["fault"] == "drop":
                assert fault["lost_connection"] == fault["clients"], fault
            assert fault["published"] > 0, fault
            if run["stack"] == "wsk":
                assert fault["recovered"] == fault["lost_connection"], fault
                assert fault["messages_lost"] == fault["messages_duplicated"] == 0, fault
                assert fault["out_of_order"] == 0, fault
        if run["stack"] == "wsk":
            # the kill alone keeps the clients away for seconds of traffic
            replayed = [
                f["server_counters"].get("wsk_recovery_replayed_total", 0) for f in run["faults"]
            ]
            assert sum(replayed) > 0, run["faults"]

    # W6: every publish reached its node's client, and node1's client got none
    for run in results["w6"]:
        assert [step["nodes"] for step in run["steps"]] == list(SMOKE.w6_nodes)
        for step in run["steps"]:
            assert step["sent"] > 0 and step["received"] == step["sent"], step
            assert step["node1_received"] == 0, step

    # W4: the nodes' CPU per connect, and the HTTP parsers measured beside it
    for run in results["w4"]:
        for mode in ("polling", "websocket"):
            res = run["modes"][mode]
            assert 0 <= res["server_kernel_ms_per_connect"] <= res["server_ms_per_connect"], run
            assert res["server_ms_per_connect"] > 0, run
    for request, cost in results["w4_parser"].items():
        assert cost["stdlib_us"] > 0 and cost["httptools_us"] > 0, (request, cost)

    # W7: socket.io-client's receivers got every publish, with its latency and the cost
    for run in results["w7"]:
        assert [step["publish_rate"] for step in run["steps"]] == list(SMOKE.w7_rates)
        for step in run["steps"]:
            assert step["sent"] > 0 and step["acked"] == step["sent"], step
            assert step["received"] == step["expected"] == step["sent"] * SMOKE.w7_receivers
            assert 0 < step["p50_ms"] <= step["p99_ms"], step
            # clock ticks of 10 ms: a smoke step is too short for the kernel part to show
            assert 0 <= step["server_kernel_us_per_delivery"] <= step["server_us_per_delivery"]

    figures = results["figures"]
    assert {row["workload"] for row in figures} == {"W1", "W2", "W3", "W4", "W5", "W6", "W7"}
    for row in figures:
        assert row["better"] in ("higher", "lower"), row
        for stack in ("wsk", "node"):
            assert row[stack] is None or isinstance(row[stack], int | float), row
        if row["ratio"] is not None:
            assert row["ratio"] == round(row["wsk"] / row["node"], 3), row

    chart = tmp_path / "benchmarks-smoke.png"
    assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    document = (tmp_path / "benchmarks.md").read_text()
    assert "<!-- bench:smoke:begin -->" in document
    assert "<!-- bench:smoke:end -->" in document
    assert "| workload | figure | wsk | Node | wsk/Node |" in document
    assert "(benchmarks-smoke.png)" in document
    assert "#### W1: wsk with recovery on" in document
    assert "#### W5 recovery:" in document
    assert "#### W6 scale with the cluster:" in document
    assert "#### W7 fan-out with socket.io-client" in document
    assert "| socket.io-client | " in document  # W4's parser costs
