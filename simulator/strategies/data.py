"""Data parallelism: independent replicas, each generating its own images; no traffic between them.

Replicas still share the machine: their pipelines' transfers contend on the links they
share, which the simulator models by running every replica in one simulation. Throughput
is ``data`` images per latency.
"""

from __future__ import annotations

from profiles.costs.cost_model import LayerShape
from profiles.catalog.models import ModelPreset
from simulator.strategies.base import CollectiveSpec, MemoryContext, MemoryTerms, PassWork, Strategy, \
    TrafficContext


class Data(Strategy):
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

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return shape  # every replica runs the whole pass

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        return []

    def buffers(self, ctx: MemoryContext, degree: int) -> MemoryTerms:
        return MemoryTerms()

    def traffic_bytes(self, degree: int, ctx: TrafficContext) -> float:
        return 0.0

    def images_per_generation(self, degree: int) -> int:
        return degree

