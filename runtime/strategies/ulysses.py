"""Ulysses sequence parallelism for one rank (with CFG and data parallel outside it).

Every step each of the ``u`` ranks of a Ulysses group embeds the whole latent (positions
depend on the whole grid), keeps its band of token rows, runs every block on it (the
attention layers exchange heads for tokens, :mod:`runtime.attention.ulysses`), runs the output layer
on its band, applies guidance to its band (a batch of two, or the exchange of the band with
the other CFG group: guidance is elementwise, :mod:`runtime.strategies.cfg`), and all-gathers
the guided bands. The scheduler step then runs on the whole latent on every rank, so the
ranks' latents stay identical without sending them.

Attention is exact, so the result equals the serial one up to floating-point order.

The trace: ``embed``, ``compute`` between all-to-alls, ``collective`` for each all-to-all
and the band gather, ``final`` and ``scheduler``; the compute and collective spans of a
pass do not overlap, so the trace comparison adds them up per category.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

import torch

from profiles.catalog.models import ModelPreset
from runtime.dist_context import DistContext
from runtime.measure import record_pass
from runtime.staged_model import StagedModel
from runtime.attention.stale_kv import KVState
from runtime.strategies.base import ModelView, PlanShare, StageSetup
from runtime.strategies.serial import batch_of
from runtime.attention.ulysses import UlyssesExchange, install_ulysses
from simulator.plan import ParallelPlan


class BandExchange(Protocol):
    """What the band loop reads of an attention exchange (Ulysses' all-to-alls, Ring's hops)."""

    title: str
    span: str
    """The trace's name for one transfer."""
    degree: int
    group: Any
    peers: str
    intervals: list[tuple[float, float, int]]


def band(rows: int, degree: int, index: int) -> tuple[int, int]:
    """Token rows of rank ``index`` of ``degree`` (equal bands; runnable.py requires rows % degree == 0)."""
    if rows % degree:
        raise ValueError(f"{rows} token rows do not split into {degree} equal Ulysses bands")
    size = rows // degree
    return index * size, (index + 1) * size


def run_ulysses(s: StageSetup, staged: StagedModel, exchange: BandExchange,
                index: int) -> torch.Tensor | None:
    """This rank's loop (Ring runs the same band loop); the final latent on the group's first rank, else None."""
    x, r = s.inputs, s.recording
    sched = x.sampler(s.model, s.share.steps)
    r0, r1 = band(s.model.rows, exchange.degree, index)
    latent = x.latent.clone()
    batch = batch_of(x.branch)
    layers = len(staged.blocks)
    for step, t in enumerate(sched.timesteps):
        r.on_step(step)
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
        record_pass(r.rec, start, time.perf_counter(), exchange.intervals, exchange.span,
                    layers=f"0-{layers - 1}", layer=0,
                    warmup=step < s.share.warmup, **tags)
        with r.rec.span("final", "final", **tags):
            mine = staged.final(hidden, ctx, r0, r1)
        # guidance is elementwise: guide the band (the CFG exchange moves only the band), then gather
        mine = x.guidance(mine, r.rec, **tags)
        with r.rec.span("gather prediction", "collective", bytes=mine.numel() * mine.element_size(), **tags):
            noise = s.place.dist.all_gather_cat(mine, exchange.group, exchange.degree, 2,
                                                f"{exchange.title} gather of the prediction with {exchange.peers}")
        with r.rec.span("scheduler", "scheduler", **tags):
            latent = sched.step(noise, t, latent)
        r.step_end_s.append(r.rec.now_s())
    return latent if index == 0 else None


@dataclass(frozen=True)
class UlyssesLoop:
    """Every block on this rank's band, its self-attention exchanging heads for tokens."""

    staged: StagedModel
    exchange: UlyssesExchange
    index: int

    def run(self, s: StageSetup) -> torch.Tensor | None:
        return run_ulysses(s, self.staged, self.exchange, self.index)


@dataclass(frozen=True)
class Ulysses:
    axis: str = "ulysses"

    def active(self, plan: ParallelPlan) -> bool:
        return plan.degrees.ulysses > 1

    def share(self, plan: ParallelPlan, preset: ModelPreset, coord: Mapping[str, int]) -> PlanShare:
        rows = preset.token_grid(plan.height_px, plan.width_px)[0]
        return PlanShare(steps=plan.steps, warmup=plan.warmup_steps, patch_rows=(rows,),
                         layers=plan.stage_layers(preset)[0])

    def prepare(self, model: ModelView, share: PlanShare, dist: DistContext) -> UlyssesLoop:
        staged = StagedModel(model.preset, model.transformer, model.rows, model.cols, KVState())
        ranks = dist.group_ranks(self.axis)
        exchange = UlyssesExchange(dist, dist.group(self.axis), len(ranks), ranks, cuda=dist.device.type == "cuda")
        install_ulysses(model.preset.family, staged.blocks, exchange)
        return UlyssesLoop(staged, exchange, dist.coord[self.axis])


STRATEGY = Ulysses()
