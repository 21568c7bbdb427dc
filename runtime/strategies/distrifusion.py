"""DistriFusion (asynchronous patch parallelism, Li et al. 2024) for one rank, with CFG and data outside it.

Each of the ``n`` ranks of a distrifusion group owns an equal band of token rows and runs
the band loop (:mod:`runtime.band_loop`, shared with Ulysses and Ring): every block
on its band, the guided bands gathered, the scheduler on the whole latent on every rank.

Inside the blocks each self- (or joint-) attention layer attends over the whole image:
its own band fresh, the other bands as the other ranks computed them one step earlier,
exchanged by asynchronous all-gathers hidden behind the rest of the step
(:mod:`runtime.attention.patch_parallel_kv`). The first ``max(W, 1)`` steps are
synchronous (the K/V are gathered before the attention): with ``W = steps`` the result
equals serial up to floating-point order; with fewer warm-up steps it drifts from serial
by the staleness, which the tests measure as a PSNR.

The trace: ``embed``; ``compute`` for the blocks between the exposed gathers;
``collective`` for each synchronous K/V gather and, after the warm-up, for the part of
each asynchronous gather the rank had to wait for (``overlapped``: true; its bytes are the
gather's); the band gather; ``final`` and ``scheduler``. Collective spans never overlap the
compute spans, so the trace comparison adds them up per category.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from profiles.catalog.models import ModelPreset
from runtime.attention.kv_state import KVState
from runtime.attention.patch_parallel_kv import BandExchange, install_band_kv
from runtime.dist_context import DistContext
from runtime.staged_model import StagedModel
from runtime.band_loop import BandLoop, band, band_rows
from runtime.strategies.base import ModelView, PlanShare
from simulator.plan import ParallelPlan

AXIS = "distrifusion"


@dataclass(frozen=True)
class DistriFusion:
    axis: str = AXIS

    def active(self, plan: ParallelPlan) -> bool:
        return plan.degrees.distrifusion > 1

    def share(self, plan: ParallelPlan, preset: ModelPreset, coord: Mapping[str, int]) -> PlanShare:
        rows = preset.token_grid(plan.height_px, plan.width_px)[0]
        return PlanShare(steps=plan.steps, warmup=plan.warmup_steps, patch_rows=(rows,),
                         layers=plan.stage_layers(preset)[0])

    def prepare(self, model: ModelView, share: PlanShare, dist: DistContext) -> BandLoop:
        state = KVState()
        staged = StagedModel(model.preset, model.transformer, model.rows, model.cols, state)
        ranks, index = dist.group_ranks(self.axis), dist.coord[self.axis]
        exchange = BandExchange(dist, dist.group(self.axis), len(ranks), ranks, cuda=dist.device.type == "cuda",
                                index=index)
        exchange.band = staged.tokens(*band(model.rows, len(ranks), index))
        exchange.band_rows = band_rows(model.rows, len(ranks))
        exchange.cols, exchange.p = model.cols, model.preset.arch.patch_size
        install_band_kv(model.preset.family, staged.blocks, exchange, state)
        return BandLoop(staged, exchange)


STRATEGY = DistriFusion()
