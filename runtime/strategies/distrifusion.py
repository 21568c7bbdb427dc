"""DistriFusion (asynchronous patch parallelism, Li et al. 2024) for one rank, with CFG and data outside it.

Each of the ``n`` ranks of a distrifusion group owns an equal band of token rows. Every
step it embeds the whole latent (positions depend on the whole grid) and keeps its band,
runs every block on it, runs the output layer on it, guides its band (elementwise, as
the Ulysses loop does) and all-gathers the guided bands; the scheduler then steps the
whole latent on every rank, so the ranks' latents stay identical without sending them.

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

import copy
import time
from dataclasses import dataclass
from typing import Mapping

import torch

from profiles.catalog.models import ModelPreset
from runtime.attention.kv_state import KVState
from runtime.attention.patch_parallel_kv import BandExchange, install_band_kv
from runtime.dist_context import DistContext
from runtime.measure import record_pass
from runtime.staged_model import StagedModel
from runtime.strategies.base import ModelView, PlanShare, StageSetup
from runtime.strategies.serial import batch_of
from simulator.plan import ParallelPlan

AXIS = "distrifusion"


def band(rows: int, degree: int, index: int) -> tuple[int, int]:
    """Token rows of rank ``index`` of ``degree`` (equal bands; the simulator's runtime_limits require it)."""
    if rows % degree:
        raise ValueError(f"{rows} token rows do not split into {degree} equal patch-parallel bands")
    size = rows // degree
    return index * size, (index + 1) * size


def run_bands(s: StageSetup, staged: StagedModel, exchange: BandExchange, index: int) -> torch.Tensor | None:
    """This rank's loop; the final latent on the group's first rank, else None."""
    x, r = s.inputs, s.recording
    sched = x.sampler(s.model, s.share.steps)
    r0, r1 = band(s.model.rows, exchange.degree, index)
    exchange.band = staged.tokens(r0, r1)
    synchronous = max(s.share.warmup, 1)  # the first step has no earlier K/V to stand in
    latent = x.latent.clone()
    batch = batch_of(x.branch)
    layers = len(staged.blocks)
    for step, t in enumerate(sched.timesteps):
        r.on_step(step)
        exchange.sync, exchange.last = step < synchronous, step == s.share.steps - 1
        tags = dict(step=step, patch=None, stage=0)
        ctx = staged.context(t, x.branch, latent.dtype)
        with r.rec.span("embed", "embed", **tags):
            hidden = staged.embed(sched.model_input(latent, step, t).expand(batch, -1, -1, -1), r0, r1)
            extra = staged.initial_extra(ctx)
        exchange.intervals.clear()
        start = time.perf_counter()
        hidden, _ = staged.run_blocks(0, layers, hidden, extra, ctx, r0, r1, True)
        if r.rec.cuda:
            torch.cuda.current_stream().synchronize()
        record_pass(r.rec, start, time.perf_counter(), exchange.intervals, "all_gather kv",
                    layers=f"0-{layers - 1}", layer=0,
                    warmup=exchange.sync, **tags)
        with r.rec.span("final", "final", **tags):
            mine = staged.final(hidden, ctx, r0, r1)
        mine = x.guidance(mine, r.rec, **tags)  # elementwise: guide the band, then gather
        with r.rec.span("gather prediction", "collective", bytes=mine.numel() * mine.element_size(), **tags):
            noise = s.place.dist.all_gather_cat(mine, exchange.group, exchange.degree, 2,
                                                f"gather of the prediction bands with {exchange.peers}")
        with r.rec.span("scheduler", "scheduler", **tags):
            latent = sched.step(noise, t, latent)
        r.step_end_s.append(r.rec.now_s())
    return latent if index == 0 else None


@dataclass(frozen=True)
class BandLoop:
    """Every block on this rank's band, attending over the whole image's (partly stale) K/V."""

    staged: StagedModel
    exchange: BandExchange
    index: int

    def run(self, s: StageSetup) -> torch.Tensor | None:
        return run_bands(s, self.staged, self.exchange, self.index)


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
        ranks = dist.group_ranks(self.axis)
        exchange = BandExchange(dist, dist.group(self.axis), len(ranks), ranks, cuda=dist.device.type == "cuda")
        install_band_kv(model.preset.family, staged.blocks, exchange, state)
        return BandLoop(staged, exchange, dist.coord[self.axis])


STRATEGY = DistriFusion()
