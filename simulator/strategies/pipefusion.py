"""PipeFusion's displaced patch pipeline: the blocks cut into stages, the latent into patches.

Each stage group runs its blocks over patch ``m`` of step ``t`` while the next stage runs
patch ``m−1``; every patch attends to the whole image's K/V, fresh for its own rows and one
step old for the others, so the first ``W`` warm-up steps are synchronous full-image passes
(``stale``). The order of the units is :mod:`simulator.schedule`, the simpy process that
runs it :mod:`simulator.stage_actor`; here are PipeFusion's rules, patch options and costs.
Its traffic is point-to-point: each patch's activations to the next stage, the latent back
to stage 0, no collective inside a stage.
"""

from __future__ import annotations

from profiles.costs.cost_model import LayerShape
from profiles.catalog.models import ModelPreset
from simulator.strategies.base import CollectiveSpec, MemoryContext, MemoryTerms, PassWork, PlanFacts, Strategy, \
    TrafficContext, ceil_div

PATCHES_PER_STAGE = (1, 2, 4, 8)
"""``M = k·N`` for these ``k``: published sweeps put the best near N to 2N."""
SMALL_PATCH_COUNTS = (2, 4, 8)
"""Fewer patches than stages leaves stages idle, but less staleness: worth a look."""


class PipeFusion(Strategy):
    name = "pipefusion"
    axis = "pipefusion"
    rank_order = 30
    title = "PipeFusion"
    description = "PipeFusion pipeline stages (displaced patch pipeline)."
    xdit_flag = "--pipefusion_parallel_degree"
    role = "pipeline"
    stale = True
    runtime_module = "runtime.strategies.pipefusion"

    def rules(self, degree: int, model: ModelPreset, rows: int) -> list[str]:
        if degree > model.layers:
            return [f"degrees.pipefusion: pipefusion({degree}) exceeds the model's {model.layers} blocks"]
        return []

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return shape  # a stage runs its own blocks whole: the cut is the plan's stage split

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        return []  # stage-to-stage sends belong to the schedule (simulator.stage_actor)

    def buffers(self, ctx: MemoryContext, degree: int) -> MemoryTerms:
        """With patches: stale K/V of the whole image for every block of the stage, ``2·L_d·b·S·h/(u·r)``;
        an incoming patch's activations, double-buffered, ``2·b·q·h``."""
        kv = 0
        if ctx.patches > 1:
            kv = 2 * ctx.layers * ctx.batch * ceil_div(ctx.image_tokens, ctx.kv_shards) * ctx.hidden * ctx.dtype_bytes
        return MemoryTerms(kv_buffers=kv,
                           receive_buffers=2 * ctx.batch * ctx.query_tokens * ctx.hidden * ctx.dtype_bytes)

    def traffic_bytes(self, degree: int, ctx: TrafficContext) -> float:
        return 2 * ctx.activation_bytes

    def runtime_limits(self, degree: int, facts: PlanFacts, model: ModelPreset) -> str | None:
        if not facts.pipelined:
            return None
        if model.arch.attention not in self.runtime_attention:
            return super().runtime_limits(max(degree, 2), facts, model)
        if facts.warmup_steps < 1:
            return ("warmup_steps: PipeFusion needs at least one synchronous warm-up step to fill its K/V "
                    "buffers before patches attend to them")
        return None

    def patch_options(self, degree: int, rows: int) -> list[int]:
        """``M ∈ {N, 2N, 4N, 8N} ∪ {2, 4, 8}``, capped by the latent's token rows; 1 without stages."""
        if degree == 1:
            return [1]
        wanted = {degree * k for k in PATCHES_PER_STAGE} | set(SMALL_PATCH_COUNTS)
        return sorted(m for m in wanted if 2 <= m <= rows)
