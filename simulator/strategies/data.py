"""Data parallelism: independent replicas, each generating its own images; no traffic between them.

Replicas still share the machine: their pipelines' transfers contend on the links they
share, which the simulator models by running every replica in one simulation. Throughput
is ``data`` images per latency.
"""

from __future__ import annotations

from profiles.catalog.models import ModelPreset
from simulator.strategies.base import SharesNothing


class Data(SharesNothing):
    name = "data"
    axis = "data"
    rank_order = 10
    title = "data parallel"
    description = "Independent replicas, each generating its own images."
    xdit_flag = "--data_parallel_degree"
    role = "replica"
    runtime_module = "runtime.strategies.data"

    def rules(self, degree: int, model: ModelPreset, rows: int) -> list[str]:
        return []  # any number of replicas, as long as the devices are there

    def images_per_generation(self, degree: int) -> int:
        return degree
