"""Classifier-free guidance: both branches as one batch, or one branch per rank (CFG parallel).

A model without CFG runs its ``cond`` branch and uses the prediction as is. A CFG model on
``cfg=1`` runs ``(uncond, cond)`` as a batch of two and guides it. With ``cfg=2`` the rank
with ``cfg`` coordinate ``c`` runs branch ``c`` alone; wherever a prediction is complete
(per unit on PipeFusion's last stage, per band under Ulysses) the two ranks all-gather it
(:meth:`~runtime.dist_context.DistContext.exchange_cfg`) and both apply the same guided
step, so their latents stay identical; branch 0 writes the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from profiles.catalog.models import ModelPreset
from runtime.dist_context import DistContext
from runtime.measure import Recorder
from runtime.model_inputs import guide
from runtime.strategies.base import Guidance
from simulator.plan import ParallelPlan

BRANCHES: tuple[str, str] = ("uncond", "cond")
"""CFG branches in batch order (and in ``cfg`` coordinate order under CFG parallel)."""


@dataclass(frozen=True)
class Unguided:
    """A model without CFG: its prediction is the noise."""

    branches: tuple[str, ...] = ("cond",)
    writes_output: bool = True

    def __call__(self, noise: torch.Tensor, rec: Recorder, **tags: object) -> torch.Tensor:
        return noise


@dataclass(frozen=True)
class BatchGuidance:
    """Both branches in one batch on this rank."""

    scale: float
    branches: tuple[str, ...] = BRANCHES
    writes_output: bool = True

    def __call__(self, noise: torch.Tensor, rec: Recorder, **tags: object) -> torch.Tensor:
        return guide(noise, self.scale)


@dataclass(frozen=True)
class ParallelGuidance:
    """One branch on this rank; the other branch's prediction comes from its peer in the cfg group."""

    scale: float
    index: int
    dist: DistContext

    @property
    def branches(self) -> tuple[str, ...]:
        return BRANCHES[self.index:self.index + 1]

    @property
    def writes_output(self) -> bool:
        return self.index == 0

    def __call__(self, noise: torch.Tensor, rec: Recorder, **tags: object) -> torch.Tensor:
        with rec.span("cfg exchange", "collective", **tags, bytes=noise.numel() * noise.element_size()):
            both = self.dist.exchange_cfg(noise)
        return guide(both, self.scale)


@dataclass(frozen=True)
class ClassifierFreeGuidance:
    axis: str = "cfg"

    def active(self, plan: ParallelPlan) -> bool:
        return plan.degrees.cfg > 1

    def guidance(self, preset: ModelPreset, plan: ParallelPlan, coord: Mapping[str, int], dist: DistContext,
                 scale: float) -> Guidance:
        if not preset.uses_cfg:
            return Unguided()
        if self.active(plan):
            return ParallelGuidance(scale=scale, index=coord[self.axis], dist=dist)
        return BatchGuidance(scale=scale)


STRATEGY = ClassifierFreeGuidance()
