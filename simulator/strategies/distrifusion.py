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

from profiles.cost_model import LayerShape
from simulator.strategies.base import CollectiveSpec, PassWork, StageStrategy, ceil_div, output_gather


class DistriFusion(StageStrategy):
    name = "distrifusion"
    axis = "distrifusion"

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return replace(shape, query_tokens=ceil_div(shape.query_tokens, degree))

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        if degree < 2:
            return []
        per_layer = 2 * local_query_tokens * work.hidden * work.batch * work.dtype_bytes
        return [
            CollectiveSpec("distrifusion", "all_gather", per_layer * work.layers, work.layers,
                           overlapped=not (work.warmup or work.first_step)),
            *output_gather(self.axis, work, degree),
        ]
