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


from simulator.strategies.base import CollectiveSpec, PassWork, SequenceShard, output_gather

TENSORS_PER_LAYER = 4
"""Q, K, V and the attention output."""
CALLS_PER_LAYER = 2
"""Q, K, V stacked into one all-to-all, the output in another (each pays the route latency)."""


class Ulysses(SequenceShard):
    name = "ulysses"
    axis = "ulysses"

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        if degree < 2:
            return []
        per_layer = TENSORS_PER_LAYER * local_query_tokens * work.hidden * work.batch * work.dtype_bytes
        return [CollectiveSpec("ulysses", "all_to_all", per_layer * work.layers, CALLS_PER_LAYER * work.layers,
                               overlapped=False), *output_gather(self.axis, work, degree)]
