"""Ring attention sequence parallelism: K/V blocks travel around the ring, overlapped with attention.

Each of ``r`` ranks holds ``q/r`` query tokens and ``k/r`` keys/values of the item. For
every attention layer the K/V blocks make ``r−1`` hops around the ring while each rank
computes partial attention on the block it holds, so the transfers overlap compute — but
only the attention compute of that same layer: layer ``l``'s K/V exist after its
projections and are consumed by its attention, so neither the projections nor the MLP can
hide them. And of the attention, only ``(r−1)/r`` can: block ``j+1`` travels while block
``j`` is computed, and the last block's partial attention runs after the last hop. So the
ring's traffic may overlap the fraction ``f = a · (r−1)/r`` of the pass's compute, where
``a`` is the attention share of the FLOPs (:attr:`PassWork.attention_share`); the pass takes
``(1−f)·C + max(f·C, comm)`` per layer, summed over the stage (exact when the stage's layers
are alike, as PixArt's, DiT's and Flux's are: Flux's double and single blocks have the same
dense FLOPs per token), and what sticks out is exposed communication.

pfrun runs it (:mod:`runtime.strategies.ring`) on the ``self`` attention families alone or
with cfg and data around it; :meth:`Ring.runtime_limits` names what it refuses.
"""

from __future__ import annotations

from typing import Callable

from profiles.catalog.models import ModelPreset
from simulator.strategies.base import (CollectiveSpec, PassWork, PlanFacts, SequenceShard, TrafficContext,
                                      output_gather, sequence_limits)


class Ring(SequenceShard):
    name = "ring"
    axis = "ring"
    rank_order = 50
    title = "Ring attention"
    description = "Ring attention sequence parallel."
    xdit_flag = "--ring_degree"
    role = "stage"
    runtime_module = "runtime.strategies.ring"

    def rules(self, degree: int, model: ModelPreset, rows: int) -> list[str]:
        return []  # what it must divide is a cross-axis rule (splits_sequence)

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        if degree < 2:
            return []
        # K and V of this rank's share of the keys, per layer (heads already split by Ulysses
        # when both are on: local_query_tokens then counts the Ulysses share too).
        # K/V block = (k/r tokens) × (h/u): k × local/q with local = q/(u·r).
        kv_share = work.kv_tokens * local_query_tokens / max(work.query_tokens, 1)
        per_layer = 2 * kv_share * work.hidden * work.batch * work.dtype_bytes
        hideable = work.attention_share * (degree - 1) / degree
        return [CollectiveSpec(self.name, "ring_pass", per_layer * work.layers, work.layers, overlapped=True,
                               overlap_fraction=hideable), *output_gather(self.name, work, degree)]

    def extra_compute_s(self, work: PassWork, degree: int, local_query_tokens: int, price: Callable[..., float]) -> float:
        """Per attention layer, what ``r`` partial-attention calls and ``r−1`` online-softmax merges
        of this rank's queries cost beyond the one attention call the layer table priced: measured
        with the runtime's own functions where the profile timed them (``pfplan profile compute
        --extras``), else priced as the merges' elementwise kernels (the cost model says which)."""
        if degree < 2:
            return 0.0
        per_layer = price("ring_attention_excess_s", degree, work.batch, local_query_tokens, work.kv_tokens,
                          work.hidden)
        return work.layers * per_layer

    def traffic_bytes(self, degree: int, ctx: TrafficContext) -> float:
        return 2 * ctx.activation_bytes * ctx.model.layers

    def runtime_limits(self, degree: int, facts: PlanFacts, model: ModelPreset) -> str | None:
        if degree < 2:
            return None
        return super().runtime_limits(degree, facts, model) or sequence_limits(self.axis, "Ring", facts)
