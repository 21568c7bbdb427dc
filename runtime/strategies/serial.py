"""The serial loop: diffusers' own forward on the whole latent, one pass per step.

It is the loop of every plan that activates no loop axis: one rank alone, CFG parallel
and data parallel (which change only the rank's batch, guidance and seed), and the
reference every parallel run is compared with. Each step is one ``blocks`` compute span
(the whole forward) and one ``scheduler`` span, tagged as a full (warm-up) pass of stage 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from profiles.catalog.models import ModelPreset
from runtime.dist_context import DistContext
from runtime.model_inputs import Branch, noise_from_output, transformer_kwargs
from runtime.strategies.base import ModelView, PlanShare, StageSetup
from simulator.plan import ParallelPlan


def batch_of(branch: Branch) -> int:
    """The batch of a conditioning branch (2 for batch CFG)."""
    ref = branch.prompt_embeds if branch.prompt_embeds is not None else branch.class_label
    return int(ref.shape[0])


def denoise(s: StageSetup) -> torch.Tensor:
    """Every step on the whole latent; the final latent."""
    m, x, share, r = s.model, s.inputs, s.share, s.recording
    sched = x.sampler(m, share.steps)
    latent = x.latent.clone()
    batch = batch_of(x.branch)
    lo, hi = share.layers.start, share.layers.stop
    for step, t in enumerate(sched.timesteps):
        r.on_step(step)
        tags = dict(step=step, patch=None, stage=share.stage)
        with r.rec.span("blocks", "compute", **tags, layers=f"{lo}-{hi - 1}", layer=lo, warmup=True):
            inp = sched.model_input(latent, step, t)
            out = m.transformer(**transformer_kwargs(m.preset, inp.expand(batch, -1, -1, -1), t, x.branch))[0]
            noise = noise_from_output(m.preset, out, m.rows, m.cols)
        noise = x.guidance(noise, r.rec, **tags)
        with r.rec.span("scheduler", "scheduler", **tags):
            latent = sched.step(noise, t, latent)
        r.step_end_s.append(r.rec.now_s())
    return latent


@dataclass(frozen=True)
class SerialLoop:
    staged: None = None

    def run(self, s: StageSetup) -> torch.Tensor:
        return denoise(s)


@dataclass(frozen=True)
class Serial:
    axis: str = "serial"

    def active(self, plan: ParallelPlan) -> bool:
        """Always runnable: the loop of a plan that activates no other loop."""
        return True

    def share(self, plan: ParallelPlan, preset: ModelPreset, coord: Mapping[str, int]) -> PlanShare:
        rows = preset.token_grid(plan.height_px, plan.width_px)[0]
        return PlanShare(steps=plan.steps, warmup=plan.steps, patch_rows=(rows,), layers=plan.stage_layers(preset)[0])

    def prepare(self, model: ModelView, share: PlanShare, dist: DistContext) -> SerialLoop:
        return SerialLoop()


STRATEGY = Serial()
