"""Capacity planning: how many GPUs (replicas of a plan) a traffic level needs.

A plan instance on ``n`` devices with ``data`` replicas inside it produces ``data`` images
every ``latency`` seconds, so ``ceil(rate / (data / latency))`` instances serve ``rate``
images per second. An SLO on latency keeps only plans fast enough. This is the
steady-state, no-queueing view: at utilisation close to 100% real requests queue, so the
table shows the utilisation to judge the headroom. Instances are packed into boxes of the
given topology whole (an instance never spans two boxes).

Worked example: rate 2 images/s, a 4-GPU plan at 1.5 s → 0.667 images/s per instance →
3 instances = 12 GPUs (utilisation 100%), 2 boxes of 8 GPUs (2 instances fit per box).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from planner.search import SearchResult


@dataclass(frozen=True)
class CapacityOption:
    label: str
    devices_per_replica: int
    latency_s: float
    replica_throughput: float
    """Images per second of one plan instance."""
    replicas: int
    total_devices: int
    boxes: int
    utilisation: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def capacity_options(result: SearchResult, *, rate_images_per_s: float, slo_s: float | None,
                     box_devices: int) -> list[CapacityOption]:
    """The fastest simulated plan of each device count, sized for the rate; fewest GPUs first."""
    fastest: dict[int, Any] = {}
    for cand in result.ranked:
        if not cand.simulated or (slo_s is not None and cand.latency_s > slo_s):
            continue
        n = cand.plan.world_size
        if n not in fastest or cand.latency_s < fastest[n].latency_s:
            fastest[n] = cand
    options = []
    for n, cand in fastest.items():
        per = cand.throughput_images_per_s
        replicas = max(1, math.ceil(rate_images_per_s / per - 1e-9))
        per_box = max(1, box_devices // n)
        options.append(CapacityOption(cand.plan.degrees.label(), n, cand.latency_s, per, replicas, replicas * n,
                                      math.ceil(replicas / per_box), rate_images_per_s / (replicas * per)))
    return sorted(options, key=lambda o: (o.total_devices, o.latency_s))
