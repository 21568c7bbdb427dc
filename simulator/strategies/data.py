"""Data parallelism: independent replicas, each generating its own images; no traffic between them.

Replicas still share the machine: their pipelines' transfers contend on the links they
share, which the simulator models by running every replica in one simulation. Throughput
is ``data`` images per latency.
"""

from __future__ import annotations

from simulator.plan import ParallelPlan


def replicas(plan: ParallelPlan) -> int:
    return plan.degrees.data


def throughput_images_per_s(plan: ParallelPlan, latency_s: float) -> float:
    return replicas(plan) / latency_s if latency_s > 0 else 0.0
