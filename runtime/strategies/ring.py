"""Ring attention sequence parallelism for one rank (with CFG and data parallel outside it).

Each of the ``r`` ranks of a ring group holds an equal band of the image's token rows
through every block, exactly as in Ulysses: every step it embeds the whole latent (positions
depend on the whole grid), keeps its band, runs every block on it, runs the output layer
on its band, guides its band and all-gathers the guided bands; the scheduler step then runs
on the whole latent on every rank. Only the self-attention layers differ: instead of
trading heads for tokens, the K/V blocks travel around the ring and partial softmaxes merge
(:mod:`runtime.attention.ring`). So this module reuses the Ulysses band loop
(:func:`runtime.strategies.ulysses.run_ulysses`) and only prepares a different exchange.

Attention is exact, so the result equals the serial one up to floating-point order.

The trace: ``embed``, ``compute`` between the waits for K/V hops, ``collective`` spans named
``ring_pass`` for each wait (bytes: the block sent), the band gather, ``final`` and
``scheduler``. A hop overlaps the partial attention of the block before it; what the trace
shows as collective is the part that did not hide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from profiles.catalog.models import ModelPreset
from runtime.attention.kv_state import KVState
from runtime.attention.ring import RingExchange, install_ring
from runtime.dist_context import DistContext
from runtime.staged_model import StagedModel
from runtime.strategies.base import ModelView, PlanShare, StageSetup
from runtime.strategies.ulysses import run_ulysses
from simulator.plan import ParallelPlan


@dataclass(frozen=True)
class RingLoop:
    """Every block on this rank's band, its self-attention passing K/V blocks around the ring."""

    staged: StagedModel
    exchange: RingExchange
    index: int

    def run(self, s: StageSetup) -> torch.Tensor | None:
        return run_ulysses(s, self.staged, self.exchange, self.index)


@dataclass(frozen=True)
class Ring:
    axis: str = "ring"

    def active(self, plan: ParallelPlan) -> bool:
        return plan.degrees.ring > 1

    def share(self, plan: ParallelPlan, preset: ModelPreset, coord: Mapping[str, int]) -> PlanShare:
        rows = preset.token_grid(plan.height_px, plan.width_px)[0]
        return PlanShare(steps=plan.steps, warmup=plan.warmup_steps, patch_rows=(rows,),
                         layers=plan.stage_layers(preset)[0])

    def prepare(self, model: ModelView, share: PlanShare, dist: DistContext) -> RingLoop:
        staged = StagedModel(model.preset, model.transformer, model.rows, model.cols, KVState())
        ranks = dist.group_ranks(self.axis)
        index = dist.coord[self.axis]
        exchange = RingExchange(dist, dist.group(self.axis), len(ranks), ranks, index,
                                cuda=dist.device.type == "cuda")
        install_ring(model.preset.family, staged.blocks, exchange)
        return RingLoop(staged, exchange, index)


STRATEGY = Ring()
