"""DistriFusion (asynchronous patch parallelism): stale K/V all-gathered behind the next layer.

Each of ``n`` ranks runs its ``S/n`` tokens through *all* layers, attending over the whole
image's K/V, of which only its own slice is fresh; the rest comes from the previous step.
Every layer all-gathers the fresh K/V slices asynchronously, overlapped with the following
compute: the K/V of layer ``l`` at step ``t`` are needed only by layer ``l`` at step ``t+1``,
so the whole pass may hide them (overlap fraction 1, unlike Ring attention). The first
``W`` (warm-up) steps are synchronous: the all-gathers sit on the critical path. The first
step is synchronous even when ``W = 0``: there is no earlier step whose K/V could stand in.
At the end of each step the output patches are all-gathered so every rank holds the whole
latent for the scheduler.
"""

from __future__ import annotations

from dataclasses import replace

from profiles.costs.cost_model import LayerShape
from profiles.catalog.models import ModelPreset
from simulator.strategies.base import (CollectiveSpec, MemoryContext, MemoryTerms, PassWork, PlanFacts,
                                      Strategy, TrafficContext, band_limits, ceil_div, output_gather)


class DistriFusion(Strategy):
    name = "distrifusion"
    axis = "distrifusion"
    rank_order = 40
    title = "DistriFusion"
    runtime_needs = "patch_kv_attention"
    description = "DistriFusion patch parallel (stale K/V all-gathered)."
    xdit_flag = None  # xDiT dropped DistriFusion (it was in PipeFuser, its predecessor)
    role = "stage"
    exclusive = True
    stale = True
    runtime_module = "runtime.strategies.distrifusion"

    def rules(self, degree: int, model: ModelPreset, rows: int) -> list[str]:
        if rows and degree > rows:
            return [f"degrees.distrifusion: {degree} patches do not fit {rows} latent token rows"]
        return []

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return replace(shape, query_tokens=ceil_div(shape.query_tokens, degree))

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        if degree < 2:
            return []
        per_layer = 2 * local_query_tokens * work.hidden * work.batch * work.dtype_bytes
        return [
            CollectiveSpec(self.name, "all_gather", per_layer * work.layers, work.layers,
                           overlapped=not (work.warmup or work.first_step)),
            *output_gather(self.name, work, degree),
        ]

    def buffers(self, ctx: MemoryContext, degree: int) -> MemoryTerms:
        """Stale K/V of the whole image for every block: ``2·L·b·S·h`` (no receive buffer of its own)."""
        return MemoryTerms(kv_buffers=2 * ctx.layers * ctx.batch * ctx.image_tokens * ctx.hidden * ctx.dtype_bytes)

    def traffic_bytes(self, degree: int, ctx: TrafficContext) -> float:
        return 2 * ctx.activation_bytes * ctx.model.layers

    def runtime_limits(self, degree: int, facts: PlanFacts, model: ModelPreset) -> str | None:
        if degree < 2:
            return None
        unsupported = super().runtime_limits(degree, facts, model)
        if unsupported:
            return unsupported
        return band_limits(self.axis, "DistriFusion", degree, facts,
                           pipelined="DistriFusion with PipeFusion patches is not executed (one loop per rank)")
