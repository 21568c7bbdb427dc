"""PipeFusion (displaced patch pipeline parallelism) for one rank.

Stage ``d`` of ``N`` owns blocks ``stage_layers[d]``. The first ``W`` steps are warm-up:
the whole image goes through the stages in order, refreshing every K/V buffer. After
that the latent is cut into ``M`` row patches; patch ``m`` of step ``t`` is embedded on
stage 0, passes each stage's blocks (its K/V slice refreshed, the rest stale) and is sent
on as soon as it is done; the last stage runs the output layer, guidance and the
scheduler step for the patch and sends the new latent rows back to stage 0, which can
start step ``t+1`` on that patch at once. The order of these units, and which of them
wait for a returned latent, is :mod:`simulator.schedule`: the simulator reads the same one.

Scheduler state: the schedulers diffusers ships for these presets (DPM-Solver++, DDIM,
flow-match Euler, DDPM) are elementwise over the latent but keep history (previous model
outputs, step index). Warm-up steps call one scheduler on the whole latent, exactly as the
serial loop does (same generator draws for stochastic schedulers). At the first patch
step the last stage splits it into **one copy per patch** (:func:`split_scheduler` cuts
every latent-shaped tensor of its state to the patch's rows) and steps each patch with its
own copy: exactly the serial update, without a barrier per step; a stochastic scheduler's
noise is drawn once per step, full-size and in the serial order, and sliced per patch
(:meth:`runtime.sampling.Sampler.step_rows`).

CFG: the last stage guides each unit's prediction (:mod:`runtime.strategies.cfg`: a batch
of two, or, with ``cfg=2``, one branch per pipeline and an all-gather of the two last
stages' predictions per unit), so both pipelines apply the same step.

Every transfer is a contiguous tensor: hidden states of a patch (plus, for SD3/Flux, the
text stream it carries) stage to stage on the forward group, latent rows last stage →
stage 0 on the return group (:class:`~runtime.dist_context.DistContext`).
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from profiles.catalog.models import ModelPreset
from runtime.attention.sequence_group import SequenceGroup, StaleLayout
from runtime.dist_context import DistContext, PendingRecv
from runtime.staged_model import StagedModel, StepContext
from runtime.attention.stale_kv import KVState, install_stale_kv
from runtime.strategies.base import ModelView, PlanShare, StageSetup
from runtime.sampling import split_scheduler  # noqa: F401 - re-exported (tests, older imports)
from runtime.strategies.serial import batch_of
from simulator.plan import ParallelPlan, patch_rows
from simulator.schedule import Unit, latent_source, receives_new_latent, returns_latent, row_bounds, units


class RecvStream:
    """Receives of a known sequence of shapes from one peer, posted ``ahead`` in advance."""

    def __init__(self, dist: DistContext, src: int, shapes: list[tuple[int, ...]], dtype: torch.dtype,
                 group: Any, ahead: int = 2) -> None:
        self.dist, self.src, self.shapes, self.dtype, self.ahead = dist, src, deque(shapes), dtype, ahead
        self.group = group
        self.posted: deque[PendingRecv] = deque()
        self._fill()

    def _fill(self) -> None:
        while self.shapes and len(self.posted) < self.ahead:
            self.posted.append(self.dist.irecv(self.shapes.popleft(), self.dtype, self.src, self.group))

    def next(self) -> torch.Tensor:
        pending = self.posted.popleft()
        self._fill()
        return pending.wait()


class StageLoop:
    """One rank's loop over its units: receive, compute, send; on the last stage also finish."""

    def __init__(self, s: StageSetup, staged: StagedModel, sp: SequenceGroup | None = None) -> None:
        self.s, self.staged, self.sp = s, staged, sp
        share, place = s.share, s.place
        self.sampler = s.inputs.sampler(s.model, share.steps)  # splits per patch at the first patch step
        self.units = units(share.steps, share.warmup, list(share.patch_rows))
        self.patches = len(share.patch_rows)
        self.first, self.last = share.stage == 0, share.last_stage
        self.lo, self.hi = share.layers.start, share.layers.stop
        self.p = s.model.preset.arch.patch_size
        self.latent = s.inputs.latent.clone()
        self.batch = batch_of(s.inputs.branch)
        config = s.model.transformer.config
        self.hidden_dim = config.num_attention_heads * config.attention_head_dim
        embeds = s.inputs.branch.prompt_embeds
        self.text_tokens = embeds.shape[1] if embeds is not None else 0
        dtype = self.latent.dtype
        self.inbound = self.returned = None
        if not self.first:
            shapes = [(self._message_numel(u),) for u in self.units]
            self.inbound = RecvStream(place.dist, place.pipeline[share.stage - 1], shapes, dtype,
                                      place.dist.forward_group)
        if self.first and share.stages > 1:
            c, _, w = self.latent.shape[1:]
            shapes = [(1, c, (u.r1 - u.r0) * self.p, w) for u in self.units if returns_latent(u, share.steps)]
            self.returned = RecvStream(place.dist, place.pipeline[-1], shapes, dtype, place.dist.return_group)

    def _tokens(self, u: Unit) -> tuple[int, int]:
        """The image tokens of the unit this rank runs: the whole patch, or its equal share of it
        when the stage is split across sequence-parallel ranks (xDiT's PipeFusion × SP splits a
        patch by tokens, so a 1-row patch splits too: half a row each on 2 ranks)."""
        s0, s1 = self.staged.tokens(u.r0, u.r1)
        return (s0, s1) if self.sp is None else self.sp.tokens(s0, s1)

    def _whole_rows(self, u: Unit) -> bool:
        """Whether this rank's share of the unit is whole token rows (then its output layer runs
        on the share and the group joins predictions; else the group joins hidden states first)."""
        return self.staged.whole_rows(*self._tokens(u))

    def _extra_shape(self, u: Unit) -> tuple[int, ...] | None:
        """What travels with a patch besides its hidden states (text stream, long skips)."""
        s0, s1 = self._tokens(u)
        return self.staged.carried_shape(self.batch, self.text_tokens, self.lo, s1 - s0)

    def _message_numel(self, u: Unit) -> int:
        extra = self._extra_shape(u)
        s0, s1 = self._tokens(u)
        return self.batch * (s1 - s0) * self.hidden_dim + (math.prod(extra) if extra else 0)

    def run(self) -> torch.Tensor | None:
        s = self.s
        timesteps = self.sampler.timesteps
        ctx: StepContext | None = None
        for i, u in enumerate(self.units):
            t = timesteps[u.step]
            if i == 0 or self.units[i - 1].step != u.step:
                s.recording.on_step(u.step)
                ctx = self.staged.context(t, s.inputs.branch, self.latent.dtype)
            self._receive_latent(u)
            noise = self._forward(u, t, ctx)
            if noise is None:  # not the last stage: the patch went on to the next one
                continue
            noise = s.inputs.guidance(noise, s.recording.rec, step=u.step, patch=u.patch, stage=s.share.stage)
            if self.sp is not None and self._whole_rows(u):  # guidance is elementwise: guide the sub-band, then join
                with s.recording.rec.span("gather prediction", "collective", step=u.step, patch=u.patch,
                                          stage=s.share.stage, bytes=noise.numel() * noise.element_size()):
                    noise = self.sp.gather(noise)
            self._step_scheduler(u, t, noise)
            if u.patch is None or u.patch == self.patches - 1:
                s.recording.step_end_s.append(s.recording.rec.now_s())
        s.place.dist.flush()
        return self.latent if self.last and (self.sp is None or self.sp.index == 0) else None

    def _receive_latent(self, u: Unit) -> None:
        """Stage 0: the latent rows the last stage sent back after the previous step."""
        s = self.s
        if self.returned is None or not receives_new_latent(u, s.share.warmup, self.patches):
            return
        whole = latent_source(u, s.share.warmup, self.patches)[1] is None  # after a full step: the whole latent
        with s.recording.rec.span("recv latent", "recv", peer=s.place.pipeline[-1], step=u.step, patch=u.patch,
                                  stage=s.share.stage):
            rows = slice(None) if whole else slice(u.r0 * self.p, u.r1 * self.p)
            self.latent[:, :, rows] = self.returned.next()

    def _forward(self, u: Unit, t: torch.Tensor, ctx: StepContext | None) -> torch.Tensor | None:
        """This stage's blocks on the unit; the noise prediction on the last stage, else None."""
        s, staged, stage, pipeline = self.s, self.staged, self.s.share.stage, self.s.place.pipeline
        rec = s.recording.rec
        tags = dict(step=u.step, patch=u.patch, stage=stage)
        s0, s1 = self._tokens(u)
        if self.first:
            with rec.span("embed", "embed", **tags):
                inp = self.sampler.model_input(self.latent, u.step, t)
                hidden = staged.embed_tokens(inp.expand(self.batch, -1, -1, -1), s0, s1)
                extra = staged.initial_extra(ctx)
        else:
            with rec.span("recv", "recv", peer=pipeline[stage - 1], **tags):
                hidden, extra = _split(self.inbound.next(), self.batch, s1 - s0, self.hidden_dim,
                                       self._extra_shape(u))
        span = dict(tags, layers=f"{self.lo}-{self.hi - 1}", layer=self.lo, warmup=u.full)
        if self.sp is None:
            with rec.span("blocks", "compute", **span):
                hidden, extra = staged.run_blocks_tokens(self.lo, self.hi, hidden, extra, ctx, s0, s1, u.full)
        else:  # compute spans between the sequence-parallel transfers
            self.sp.clear()
            start = time.perf_counter()
            hidden, extra = staged.run_blocks_tokens(self.lo, self.hi, hidden, extra, ctx, s0, s1, u.full)
            if rec.cuda:
                torch.cuda.current_stream().synchronize()
            self.sp.record(rec, start, time.perf_counter(), **span)
        if not self.last:
            msg = hidden.reshape(-1) if extra is None else torch.cat([hidden.reshape(-1), extra.reshape(-1)])
            with rec.span("send", "send", peer=pipeline[stage + 1], bytes=msg.numel() * msg.element_size(), **tags):
                s.place.dist.isend(msg, pipeline[stage + 1], s.place.dist.forward_group)
            return None
        if not staged.whole_rows(s0, s1):  # the output layer unpatchifies whole rows: join the patch first
            assert self.sp is not None
            with rec.span("gather hidden", "collective", bytes=hidden.numel() * hidden.element_size(), **tags):
                hidden = self.sp.gather(hidden, dim=1)
            s0, s1 = staged.tokens(u.r0, u.r1)
        with rec.span("final", "final", **tags):
            return staged.final(hidden, ctx, *staged.enclosing_rows(s0, s1))

    def _step_scheduler(self, u: Unit, t: torch.Tensor, noise: torch.Tensor) -> None:
        """Last stage: the scheduler step of the unit's rows, then the rows back to stage 0."""
        s, p = self.s, self.p
        rec, stage = s.recording.rec, s.share.stage
        rows = slice(u.r0 * p, u.r1 * p)
        with rec.span("scheduler", "scheduler", step=u.step, patch=u.patch, stage=stage):
            if u.full:
                self.latent = self.sampler.step(noise, t, self.latent)
            else:
                self.latent[:, :, rows] = self.sampler.step_rows(
                    noise, t, self.latent[:, :, rows], patch=u.patch, full_shape=self.latent.shape,
                    bounds=[(a * p, b * p) for a, b in row_bounds(list(s.share.patch_rows))])
        if s.share.stages > 1 and returns_latent(u, s.share.steps):
            back = self.latent[:, :, rows].contiguous()
            with rec.span("send latent", "send", peer=s.place.pipeline[0], bytes=back.numel() * back.element_size(),
                          step=u.step, patch=u.patch, stage=stage):
                s.place.dist.isend(back, s.place.pipeline[0], s.place.dist.return_group)


def _split(msg: torch.Tensor, batch: int, tokens: int, hidden: int,
           text_shape: tuple[int, ...] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    n = batch * tokens * hidden
    h = msg[:n].view(batch, tokens, hidden)
    return h, (msg[n:].view(text_shape) if text_shape is not None else None)


@dataclass(frozen=True)
class PipeFusionLoop:
    """A stage's blocks with stale-K/V attention, run by :class:`StageLoop`; ``sp``: the stage's
    sequence-parallel group (PipeFusion × Ulysses / × Ring), whose attention hook the stage takes."""

    staged: StagedModel
    sp: SequenceGroup | None = None

    def run(self, s: StageSetup) -> torch.Tensor | None:
        return StageLoop(s, self.staged, self.sp).run()


@dataclass(frozen=True)
class PipeFusion:
    axis: str = "pipefusion"

    def active(self, plan: ParallelPlan) -> bool:
        """Stages, or patches on one rank (PipeFusion's stale path without any transfer)."""
        return plan.degrees.pipefusion > 1 or plan.patches > 1

    def share(self, plan: ParallelPlan, preset: ModelPreset, coord: Mapping[str, int]) -> PlanShare:
        stage = coord[self.axis]
        rows = preset.token_grid(plan.height_px, plan.width_px)[0]
        return PlanShare(steps=plan.steps, warmup=plan.warmup_steps, patch_rows=tuple(patch_rows(rows, plan.patches)),
                         layers=plan.stage_layers(preset)[stage], stage=stage, stages=plan.degrees.pipefusion)

    takes_sequence: bool = True
    """Runs with Ulysses / Ring inside its stages: each patch split across their ranks."""

    def prepare(self, model: ModelView, share: PlanShare, dist: DistContext) -> PipeFusionLoop:
        kv = KVState()
        staged = StagedModel(model.preset, model.transformer, model.rows, model.cols, kv)
        blocks = staged.blocks[share.layers.start:share.layers.stop]
        from runtime.strategies import sequence_axes, sequence_group

        if not sequence_axes(dist.degrees):
            install_stale_kv(model.preset.family, blocks, kv)
            return PipeFusionLoop(staged)
        sp = sequence_group(dist)
        patches = [staged.tokens(a, b) for a, b in row_bounds(list(share.patch_rows))]
        sp.install(model.preset.family, blocks, kv, StaleLayout(model.rows * model.cols, patches))
        return PipeFusionLoop(staged, sp)


STRATEGY = PipeFusion()
