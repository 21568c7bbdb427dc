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
from runtime.model_inputs import Branch, forward_kwargs, guide, noise_from_output
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
    bounds, start = [], 0
    for n in patch_rows:
        bounds.append((start, start + n))
        start += n
    for i in range(min(warmup, steps), steps):
        units.extend(Unit(i, m, r0, r1) for m, (r0, r1) in enumerate(bounds))
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


def run_stage(s: StageSetup) -> torch.Tensor | None:
    """Run this rank's part of the denoising loop; the final latent on the last stage, else None."""
    full_sched = copy.deepcopy(s.scheduler)
    full_sched.set_timesteps(s.steps)
    timesteps = full_sched.timesteps
    scheds: list[Any] | None = None  # one copy per patch, split off at the first patch step
    units = schedule(s.steps, s.warmup, s.patch_rows, s.rows)
    first, last = s.stage == 0, s.stage == s.stages - 1
    lo, hi = s.layers.start, s.layers.stop
    p = s.preset.arch.patch_size
    dtype = s.latent.dtype
    latent = s.latent.clone()
    batch = _batch(s.branch)
    whole = s.staged is None  # serial, CFG and data parallel: diffusers' own forward on the whole image
    patch_of_rows = {}
    start = 0
    for m, n in enumerate(s.patch_rows):
        patch_of_rows[m] = (start, start + n)
        start += n

    hidden_dim = s.model.config.num_attention_heads * s.model.config.attention_head_dim
    text_tokens = s.branch.prompt_embeds.shape[1] if s.branch.prompt_embeds is not None else 0

    def extra_shape(u: Unit) -> tuple[int, ...] | None:
        """What travels with a patch besides its hidden states (text stream, long skips)."""
        if s.staged is None:
            return None
        return s.staged.carried_shape(batch, text_tokens, lo, (u.r1 - u.r0) * s.cols)

    inbound = outbound_latent = None
    if not first:
        shapes = [(_numel(batch, (u.r1 - u.r0) * s.cols, hidden_dim, extra_shape(u)),) for u in units]
        inbound = RecvStream(s.dist, s.pipeline[s.stage - 1], shapes, dtype, s.dist.forward_group)
    if first and s.stages > 1:
        c, _, w = latent.shape[1:]
        shapes = [(1, c, (u.r1 - u.r0) * p, w) for u in units if u.step < s.steps - 1]
        outbound_latent = RecvStream(s.dist, s.pipeline[-1], shapes, dtype, s.dist.return_group)

    ctx: StepContext | None = None
    ctx_step = -1
    for u in units:
        if u.step != ctx_step:
            s.on_step(u.step)
            ctx_step = u.step
            t = timesteps[u.step]
            if not whole:
                ctx = s.staged.context(t, s.branch, dtype)
        args = dict(step=u.step, patch=u.patch, stage=s.stage, layers=f"{lo}-{hi - 1}", layer=lo, warmup=u.full)
        lat_rows = slice(u.r0 * p, u.r1 * p)
        if first and outbound_latent is not None and u.step > 0:
            prev_full = u.step - 1 < s.warmup  # a warm-up step returns the whole latent at once
            if not prev_full or u.patch in (None, 0):
                with s.rec.span("recv latent", "recv", peer=s.pipeline[-1], step=u.step, patch=u.patch,
                                stage=s.stage):
                    rows_in = slice(None) if prev_full else lat_rows
                    latent[:, :, rows_in] = outbound_latent.next()
        if whole:
            with s.rec.span("blocks", "compute", **args):
                model_in = latent.expand(batch, -1, -1, -1)
                out = s.model(**forward_kwargs(s.preset, s.model, model_in, t, s.branch))[0]
                noise = noise_from_output(s.preset, out, s.rows, s.cols)
        else:
            if first:
                with s.rec.span("embed", "embed", step=u.step, patch=u.patch, stage=s.stage):
                    hidden = s.staged.embed(latent.expand(batch, -1, -1, -1), u.r0, u.r1)
                    text = s.staged.initial_extra(ctx)
            else:
                with s.rec.span("recv", "recv", peer=s.pipeline[s.stage - 1], step=u.step, patch=u.patch,
                                stage=s.stage):
                    hidden, text = _split(inbound.next(), batch, (u.r1 - u.r0) * s.cols, hidden_dim, extra_shape(u))
            with s.rec.span("blocks", "compute", **args):
                hidden, text = s.staged.run_blocks(lo, hi, hidden, text, ctx, u.r0, u.r1, u.full)
            if not last:
                msg = hidden.reshape(-1) if text is None else torch.cat([hidden.reshape(-1), text.reshape(-1)])
                with s.rec.span("send", "send", peer=s.pipeline[s.stage + 1], bytes=msg.numel() * msg.element_size(),
                                step=u.step, patch=u.patch, stage=s.stage):
                    s.dist.isend(msg, s.pipeline[s.stage + 1], s.dist.forward_group)
                continue
            with s.rec.span("final", "final", step=u.step, patch=u.patch, stage=s.stage):
                noise = s.staged.final(hidden, ctx, u.r0, u.r1)
        noise = _guided(s, noise, u)
        with s.rec.span("scheduler", "scheduler", step=u.step, patch=u.patch, stage=s.stage):
            if u.full:
                latent = full_sched.step(noise, t, latent, generator=s.generator, return_dict=False)[0]
            else:
                if scheds is None:
                    scheds = [split_scheduler(full_sched, latent.shape, slice(a * p, b * p))
                              for a, b in patch_of_rows.values()]
                latent[:, :, lat_rows] = scheds[u.patch].step(noise, t, latent[:, :, lat_rows],
                                                              generator=s.generator, return_dict=False)[0]
        if s.stages > 1 and u.step < s.steps - 1:
            rows_out = latent[:, :, lat_rows].contiguous()
            with s.rec.span("send latent", "send", peer=s.pipeline[0], bytes=rows_out.numel() * rows_out.element_size(),
                            step=u.step, patch=u.patch, stage=s.stage):
                s.dist.isend(rows_out, s.pipeline[0], s.dist.return_group)
        if u.patch is None or u.patch == len(s.patch_rows) - 1:
            s.step_end_s.append(s.rec.now_s())
    s.dist.flush()
    return latent if last else None


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


def _numel(batch: int, tokens: int, hidden: int, text_shape: tuple[int, ...] | None) -> int:
    n = batch * tokens * hidden
    if text_shape is not None:
        n += math.prod(text_shape)
    return n


def _split(msg: torch.Tensor, batch: int, tokens: int, hidden: int,
           text_shape: tuple[int, ...] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    n = batch * tokens * hidden
    h = msg[:n].view(batch, tokens, hidden)
    return h, (msg[n:].view(text_shape) if text_shape is not None else None)

