"""The sizes of a benchmark run: the full one (``make bench``) and the smoke one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
    # py-spy on a wsk node during W1
    profile_seconds: float = 15.0
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
    profile_seconds=0.0,
)

MODES = {"full": FULL, "smoke": SMOKE}
