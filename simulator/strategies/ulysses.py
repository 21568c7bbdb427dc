"""Ulysses sequence parallelism: tokens sharded for projections and MLP, heads sharded for attention.

Each of ``u`` ranks holds ``q/u`` query tokens of the item. Around every attention layer
all-to-alls switch between the token shard and a head shard: Q, K, V in (stacked into one
call, as pfrun does; xDiT makes three) and the attention output back, moving four times
this rank's ``q/u × hidden`` activations, (u−1)/u of them to other ranks, in two calls per
layer. They sit on the critical path (neither overlaps them). After the output layer the
token shards of the prediction are all-gathered. Per rank compute is
a layer shape with ``q/u`` queries over all ``k`` keys: the same FLOPs as attention over
``h/u`` heads of all ``q`` queries. Heads must divide by ``u`` (checked by the plan).
"""

from __future__ import annotations

from profiles.catalog.models import ModelPreset
from simulator.strategies.base import (CollectiveSpec, PassWork, PlanFacts, SequenceShard, TrafficContext,
                                      output_gather, sequence_limits)

TENSORS_PER_LAYER = 4
"""Q, K, V and the attention output."""
CALLS_PER_LAYER = 2
"""Q, K, V stacked into one all-to-all, the output in another (each pays the route latency)."""


class Ulysses(SequenceShard):
    name = "ulysses"
    axis = "ulysses"
    rank_order = 60
    title = "Ulysses"
    description = "Ulysses (all-to-all over heads) sequence parallel."
    xdit_flag = "--ulysses_degree"
    role = "stage"
    shards_heads = True
    runtime_module = "runtime.strategies.ulysses"

    def rules(self, degree: int, model: ModelPreset, rows: int) -> list[str]:
        return []  # heads and tokens: cross-axis rules (shards_heads, splits_sequence)

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        if degree < 2:
            return []
        per_layer = TENSORS_PER_LAYER * local_query_tokens * work.hidden * work.batch * work.dtype_bytes
        return [CollectiveSpec(self.name, "all_to_all", per_layer * work.layers, CALLS_PER_LAYER * work.layers,
                               overlapped=False), *output_gather(self.name, work, degree)]

    def traffic_bytes(self, degree: int, ctx: TrafficContext) -> float:
        return 4 * ctx.activation_bytes * ctx.model.layers / max(degree, 1)

    def runtime_limits(self, degree: int, facts: PlanFacts, model: ModelPreset) -> str | None:
        if degree < 2:
            return None
        return super().runtime_limits(degree, facts, model) or sequence_limits(self.axis, "Ulysses", facts)
