"""The sizes of a benchmark run: the full one (``make bench``) and the smoke one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class Settings:
    """Every count, rate and duration a run uses; recorded with its results."""

    mode: str
    nodes: int = 2
    # what both stacks' nodes are given alike
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    # the okok heartbeat, on both sides, is kept out of the measurements
    heartbeat_interval: float = 3600.0
    haproxy_maxconn: int = 9000
    # the wsk nodes' --log-level: warning keeps a connection from costing a log line
    # (``--set wsk_log_level=info`` shows each refusal's reason, for a run that hit one)
    wsk_log_level: str = "warning"
    # W1: fan-out
    w1_clients: int = 1000
    w1_payloads: tuple[int, ...] = (100, 1024)
    w1_start_rate: float = 4.0
    w1_factor: float = 1.5
    w1_max_steps: int = 16
    w1_step_seconds: float = 4.0
    w1_drain_seconds: float = 2.0
    w1_min_delivery: float = 0.99
    w1_max_p95_ms: float = 500.0
    w1_receiver_workers: int = 2
    # the server CPU a delivery costs: median over the passing steps in this range of
    # offered msgs/s, where two cores are not yet saturated and nothing batches much
    w1_cost_range: tuple[float, float] = (5_000.0, 25_000.0)
    # wsk's W1 is run once per --recovery-window (the first is the server's default, the one
    # compared with Node); Node's W1 is socket.io with the pub/sub Redis adapter, as before
    w1_recovery_windows: tuple[float, ...] = (120.0, 0.0)
    # recovery on may cost at most this much more server CPU per delivered message than off
    w1_recovery_max_cost: float = 1.15
    # W2: cross-node latency
    w2_low_rate: float = 2.0
    w2_seconds: float = 5.0
    # W3: idle capacity
    w3_connections: int = 10_000
    w3_workers: int = 4
    w3_concurrency: int = 100
    w3_settle_seconds: float = 5.0
    w3_idle_seconds: float = 25.0
    # W4: connect rate
    w4_seconds: float = 5.0
    w4_workers: int = 2
    w4_concurrency: int = 16
    # W5: recovery. Clients on node1 in one room, the publisher on node2; faults: every
    # client's transport dropped at once (the node lives), then kill -9 of node1 (node2
    # takes them). Node: socket.io with connectionStateRecovery and the streams adapter.
    w5_clients: int = 1000
    w5_workers: int = 2
    w5_rate: float = 10.0
    w5_payload: int = 100
    w5_faults: tuple[str, ...] = ("drop", "kill")
    w5_recovery_window: float = 120.0
    w5_before_seconds: float = 4.0
    w5_after_seconds: float = 4.0
    w5_reconnect_delay: float = 0.5
    w5_reconnect_concurrency: int = 200
    w5_recover_timeout: float = 60.0
    w5_settle_seconds: float = 10.0
    # W6: scale with the cluster. As many nodes as each entry of w6_nodes, w6_rooms rooms
    # whose members are all on one node (room k on node k mod N, one client there in each),
    # and every node but node1 publishing w6_rate_per_node a second into its own rooms:
    # node1's rooms stay quiet, so its CPU is what other nodes' traffic costs it
    w6_nodes: tuple[int, ...] = (2, 4, 8)
    w6_rooms: int = 100
    w6_rate_per_node: float = 200.0
    w6_payload: int = 100
    w6_seconds: float = 10.0
    # W7: W1's fan-out with socket.io-client as the generator (bench/node/generator.js):
    # w7_receivers websocket clients in one room through HAProxy, one publisher, one step
    # of w7_seconds per rate, the stacks in turns
    w7_receivers: int = 200
    w7_payload: int = 100
    w7_rates: tuple[float, ...] = (10.0, 30.0, 100.0, 200.0)
    w7_seconds: float = 8.0
    # py-spy on a wsk node during W1, at profile_rate publishes a second (0: at W1's
    # highest passing rate for wsk)
    profile_seconds: float = 15.0
    profile_rate: float = 0.0
    connect_concurrency: int = 100
    stacks: tuple[str, ...] = field(default=("wsk", "node"))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Settings(mode="full")

SMOKE = Settings(
    mode="smoke",
    w1_clients=20,
    w1_payloads=(100,),
    w1_start_rate=5.0,
    w1_max_steps=2,
    w1_step_seconds=0.5,
    w1_drain_seconds=1.0,
    w1_receiver_workers=1,
    w2_low_rate=5.0,
    w2_seconds=0.5,
    w3_connections=40,
    w3_workers=1,
    w3_concurrency=20,
    w3_settle_seconds=0.5,
    w3_idle_seconds=1.0,
    w4_seconds=0.5,
    w4_workers=1,
    w4_concurrency=2,
    w5_clients=20,
    w5_workers=1,
    w5_rate=10.0,
    w5_before_seconds=0.5,
    w5_after_seconds=0.5,
    w5_reconnect_delay=0.2,
    w5_recover_timeout=20.0,
    w5_settle_seconds=3.0,
    w6_nodes=(2,),
    w6_rooms=4,
    w6_rate_per_node=10.0,
    w6_seconds=1.0,
    w7_receivers=10,
    w7_rates=(10.0,),
    w7_seconds=1.0,
    profile_seconds=0.0,
)

MODES = {"full": FULL, "smoke": SMOKE}


def override(settings: Settings, assignments: list[str]) -> Settings:
    """``settings`` with ``NAME=VALUE`` assignments applied (``--set``), each of its field's type.

    A tuple field takes comma-separated values: ``w1_payloads=100,1024``.
    """
    changes: dict[str, Any] = {}
    known = {f.name: f for f in fields(Settings)}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        name = name.strip()
        if not sep or name not in known or name == "mode":
            raise ValueError(
                f"--set {assignment!r}: expected NAME=VALUE, NAME a setting such as w5_clients"
            )
        current = getattr(settings, name)
        try:
            if isinstance(current, tuple):
                kind = type(current[0]) if current else str
                changes[name] = tuple(kind(part) for part in text.split(",") if part.strip())
            elif isinstance(current, bool):
                changes[name] = text.lower() in ("1", "yes", "true", "on")
            else:
                changes[name] = type(current)(text)
        except ValueError as exc:
            raise ValueError(f"--set {assignment!r}: {exc}") from exc
    return replace(settings, **changes)
