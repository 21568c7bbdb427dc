"""Ulysses sequence parallelism: tokens sharded for projections and MLP, heads sharded for attention.

Each of ``u`` ranks holds ``q/u`` query tokens of the item. Around every attention layer
four all-to-alls (Q, K, V in; the attention output back) switch between the token shard
and a head shard, each moving this rank's ``q/u × hidden`` activations, (u−1)/u of them to
other ranks. They sit on the critical path (xDiT does not overlap them). Per rank compute is
a layer shape with ``q/u`` queries over all ``k`` keys: the same FLOPs as attention over
``h/u`` heads of all ``q`` queries. Heads must divide by ``u`` (checked by the plan).
"""

from __future__ import annotations


from simulator.strategies.base import CollectiveSpec, PassWork, SequenceShard

ALL_TO_ALLS_PER_LAYER = 4


class Ulysses(SequenceShard):
    name = "ulysses"
    axis = "ulysses"

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        if degree < 2:
            return []
        per_layer = local_query_tokens * work.hidden * work.batch * work.dtype_bytes
        count = ALL_TO_ALLS_PER_LAYER * work.layers
        return [CollectiveSpec("ulysses", "all_to_all", per_layer * count, count, overlapped=False)]
