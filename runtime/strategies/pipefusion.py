"""PipeFusion (displaced patch pipeline parallelism) for one rank, with CFG and serial as cases.

Stage ``d`` of ``N`` owns blocks ``stage_layers[d]``. The first ``W`` steps are warm-up:
the whole image goes through the stages in order, refreshing every K/V buffer. After
that the latent is cut into ``M`` row patches; patch ``m`` of step ``t`` is embedded on
stage 0, passes each stage's blocks (its K/V slice refreshed, the rest stale) and is sent
on as soon as it is done; the last stage runs the output layer, guidance and the
scheduler step for the patch and sends the new latent rows back to stage 0, which can
start step ``t+1`` on that patch at once.

Scheduler state: the schedulers diffusers ships for these presets (DPM-Solver++, DDIM,
flow-match Euler, DDPM) are elementwise over the latent but keep history (previous model
outputs, step index). Warm-up steps call one scheduler on the whole latent, exactly as the
serial loop does (same generator draws for stochastic schedulers). At the first patch
step the last stage splits it into **one copy per patch** (:func:`split_scheduler` cuts
every latent-shaped tensor of its state to the patch's rows) and steps each patch with its
own copy: exactly the serial update for deterministic schedulers, without a barrier per
step. A stochastic scheduler (DDPM) then draws its noise per patch, so it differs from
the serial draw.

CFG: with ``cfg=1`` a CFG model runs (uncond, cond) as a batch of two; with ``cfg=2`` each
branch runs on its own pipeline and the two last stages all-gather their predictions per
unit (once per step without patches), then both apply the same guided step, so their
latents stay identical.

Every transfer is a contiguous tensor: hidden states of a patch (plus, for SD3/Flux, the
text stream it carries) stage to stage, latent rows last stage → stage 0.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from runtime.dist_context import DistContext, PendingRecv
from runtime.measure import Recorder
from runtime.model_inputs import Branch, transformer_kwargs, guide, noise_from_output
from runtime.staged_model import StagedModel, StepContext


@dataclass(frozen=True)
class Unit:
    """One pass of a stage: a warm-up step on the whole image, or one patch of a step."""

    step: int
    patch: int | None
    r0: int
    r1: int

    @property
    def full(self) -> bool:
        return self.patch is None


def schedule(steps: int, warmup: int, patch_rows: list[int], rows: int) -> list[Unit]:
    """Units in execution order: ``(3, 1, [2, 2], 4)`` → full step 0, then patches (0-2, 2-4) of steps 1, 2."""
    units = [Unit(i, None, 0, rows) for i in range(min(warmup, steps))]
    for i in range(min(warmup, steps), steps):
        units.extend(Unit(i, m, r0, r1) for m, (r0, r1) in enumerate(row_bounds(patch_rows)))
    return units


@dataclass
class StageSetup:
    """Everything one rank's denoising loop needs."""

    preset: Any
    model: Any
    scheduler: Any
    branch: Branch
    latent: torch.Tensor
    steps: int
    warmup: int
    patch_rows: list[int]
    rows: int
    cols: int
    layers: range
    stage: int
    stages: int
    pipeline: list[int]
    cfg_mode: str  # "none" | "batch" | "parallel"
    guidance_scale: float
    dist: DistContext
    rec: Recorder
    staged: StagedModel | None = None
    generator: torch.Generator | None = None
    on_step: Callable[[int], None] = lambda step: None
    step_end_s: list[float] = field(default_factory=list)


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


def row_bounds(patch_rows: list[int]) -> list[tuple[int, int]]:
    """``[3, 3, 2]`` → ``[(0, 3), (3, 6), (6, 8)]``."""
    out, start = [], 0
    for n in patch_rows:
        out.append((start, start + n))
        start += n
    return out


def run_stage(s: StageSetup) -> torch.Tensor | None:
    """Run this rank's part of the denoising loop; the final latent on the last stage, else None."""
    return StageLoop(s).run()


class StageLoop:
    """One rank's loop over its units: receive, compute, send; on the last stage also finish.

    ``whole`` (no staged model) is serial, CFG and data parallel: diffusers' own forward on
    the whole latent, one unit per step.
    """

    def __init__(self, s: StageSetup) -> None:
        self.s = s
        self.full_sched = copy.deepcopy(s.scheduler)
        self.full_sched.set_timesteps(s.steps)
        self.patch_scheds: list[Any] | None = None  # split off at the first patch step
        self.units = schedule(s.steps, s.warmup, s.patch_rows, s.rows)
        self.first, self.last = s.stage == 0, s.stage == s.stages - 1
        self.lo, self.hi = s.layers.start, s.layers.stop
        self.p = s.preset.arch.patch_size
        self.latent = s.latent.clone()
        self.batch = _batch(s.branch)
        self.hidden_dim = s.model.config.num_attention_heads * s.model.config.attention_head_dim
        self.text_tokens = s.branch.prompt_embeds.shape[1] if s.branch.prompt_embeds is not None else 0
        dtype = s.latent.dtype
        self.inbound = self.returned = None
        if not self.first:
            shapes = [(self._message_numel(u),) for u in self.units]
            self.inbound = RecvStream(s.dist, s.pipeline[s.stage - 1], shapes, dtype, s.dist.forward_group)
        if self.first and s.stages > 1:
            c, _, w = self.latent.shape[1:]
            shapes = [(1, c, (u.r1 - u.r0) * self.p, w) for u in self.units if u.step < s.steps - 1]
            self.returned = RecvStream(s.dist, s.pipeline[-1], shapes, dtype, s.dist.return_group)

    def _extra_shape(self, u: Unit) -> tuple[int, ...] | None:
        """What travels with a patch besides its hidden states (text stream, long skips)."""
        if self.s.staged is None:
            return None
        return self.s.staged.carried_shape(self.batch, self.text_tokens, self.lo, (u.r1 - u.r0) * self.s.cols)

    def _message_numel(self, u: Unit) -> int:
        extra = self._extra_shape(u)
        return self.batch * (u.r1 - u.r0) * self.s.cols * self.hidden_dim + (math.prod(extra) if extra else 0)

    def run(self) -> torch.Tensor | None:
        s = self.s
        timesteps = self.full_sched.timesteps
        ctx: StepContext | None = None
        for i, u in enumerate(self.units):
            t = timesteps[u.step]
            if i == 0 or self.units[i - 1].step != u.step:
                s.on_step(u.step)
                ctx = s.staged.context(t, s.branch, self.latent.dtype) if s.staged is not None else None
            self._receive_latent(u)
            noise = self._forward(u, t, ctx)
            if noise is None:  # not the last stage: the patch went on to the next one
                continue
            self._step_scheduler(u, t, _guided(s, noise, u))
            if u.patch is None or u.patch == len(s.patch_rows) - 1:
                s.step_end_s.append(s.rec.now_s())
        s.dist.flush()
        return self.latent if self.last else None

    def _receive_latent(self, u: Unit) -> None:
        """Stage 0: the latent rows the last stage sent back after the previous step."""
        s = self.s
        if self.returned is None or u.step == 0:
            return
        prev_full = u.step - 1 < s.warmup  # a warm-up step returns the whole latent at once
        if prev_full and u.patch not in (None, 0):
            return
        with s.rec.span("recv latent", "recv", peer=s.pipeline[-1], step=u.step, patch=u.patch, stage=s.stage):
            rows = slice(None) if prev_full else slice(u.r0 * self.p, u.r1 * self.p)
            self.latent[:, :, rows] = self.returned.next()

    def _forward(self, u: Unit, t: torch.Tensor, ctx: StepContext | None) -> torch.Tensor | None:
        """This stage's blocks on the unit; the noise prediction on the last stage, else None."""
        s = self.s
        args = dict(step=u.step, patch=u.patch, stage=s.stage, layers=f"{self.lo}-{self.hi - 1}", layer=self.lo,
                    warmup=u.full)
        if s.staged is None:
            with s.rec.span("blocks", "compute", **args):
                model_in = self.latent.expand(self.batch, -1, -1, -1)
                out = s.model(**transformer_kwargs(s.preset, model_in, t, s.branch))[0]
                return noise_from_output(s.preset, out, s.rows, s.cols)
        tags = dict(step=u.step, patch=u.patch, stage=s.stage)
        if self.first:
            with s.rec.span("embed", "embed", **tags):
                hidden = s.staged.embed(self.latent.expand(self.batch, -1, -1, -1), u.r0, u.r1)
                extra = s.staged.initial_extra(ctx)
        else:
            with s.rec.span("recv", "recv", peer=s.pipeline[s.stage - 1], **tags):
                hidden, extra = _split(self.inbound.next(), self.batch, (u.r1 - u.r0) * s.cols, self.hidden_dim,
                                       self._extra_shape(u))
        with s.rec.span("blocks", "compute", **args):
            hidden, extra = s.staged.run_blocks(self.lo, self.hi, hidden, extra, ctx, u.r0, u.r1, u.full)
        if not self.last:
            msg = hidden.reshape(-1) if extra is None else torch.cat([hidden.reshape(-1), extra.reshape(-1)])
            with s.rec.span("send", "send", peer=s.pipeline[s.stage + 1], bytes=msg.numel() * msg.element_size(),
                            **tags):
                s.dist.isend(msg, s.pipeline[s.stage + 1], s.dist.forward_group)
            return None
        with s.rec.span("final", "final", **tags):
            return s.staged.final(hidden, ctx, u.r0, u.r1)

    def _step_scheduler(self, u: Unit, t: torch.Tensor, noise: torch.Tensor) -> None:
        """Last stage: the scheduler step of the unit's rows, then the rows back to stage 0."""
        s, p = self.s, self.p
        rows = slice(u.r0 * p, u.r1 * p)
        with s.rec.span("scheduler", "scheduler", step=u.step, patch=u.patch, stage=s.stage):
            if u.full:
                self.latent = self.full_sched.step(noise, t, self.latent, generator=s.generator,
                                                   return_dict=False)[0]
            else:
                if self.patch_scheds is None:
                    self.patch_scheds = [split_scheduler(self.full_sched, self.latent.shape, slice(a * p, b * p))
                                         for a, b in row_bounds(s.patch_rows)]
                self.latent[:, :, rows] = self.patch_scheds[u.patch].step(
                    noise, t, self.latent[:, :, rows], generator=s.generator, return_dict=False)[0]
        if s.stages > 1 and u.step < s.steps - 1:
            back = self.latent[:, :, rows].contiguous()
            with s.rec.span("send latent", "send", peer=s.pipeline[0], bytes=back.numel() * back.element_size(),
                            step=u.step, patch=u.patch, stage=s.stage):
                s.dist.isend(back, s.pipeline[0], s.dist.return_group)


def split_scheduler(sched: Any, full_shape: torch.Size, rows: slice) -> Any:
    """A copy of ``sched`` for one patch: every tensor of the latent's shape in its state
    (DPM-Solver's previous model outputs, last sample, ...) cut to the patch's latent rows.

    The schedulers used here are elementwise, so a copy stepping only these rows computes
    exactly what the whole-latent scheduler computes for them.
    """
    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.shape == full_shape:
            return value[:, :, rows].clone()
        if isinstance(value, list):
            return [cut(v) for v in value]
        if isinstance(value, tuple):
            return tuple(cut(v) for v in value)
        return value

    out = copy.deepcopy(sched)
    for name, value in list(vars(out).items()):
        setattr(out, name, cut(value))
    return out


def _guided(s: StageSetup, noise: torch.Tensor, u: Unit) -> torch.Tensor:
    if s.cfg_mode == "batch":
        return guide(noise, s.guidance_scale)
    if s.cfg_mode == "parallel":
        with s.rec.span("cfg exchange", "collective", step=u.step, patch=u.patch, stage=s.stage,
                        bytes=noise.numel() * noise.element_size()):
            both = s.dist.exchange_cfg(noise)
        return guide(both, s.guidance_scale)
    return noise


def _batch(branch: Branch) -> int:
    ref = branch.prompt_embeds if branch.prompt_embeds is not None else branch.class_label
    return int(ref.shape[0])


def _split(msg: torch.Tensor, batch: int, tokens: int, hidden: int,
           text_shape: tuple[int, ...] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    n = batch * tokens * hidden
    h = msg[:n].view(batch, tokens, hidden)
    return h, (msg[n:].view(text_shape) if text_shape is not None else None)

