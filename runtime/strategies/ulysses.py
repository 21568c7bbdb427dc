"""Ulysses sequence parallelism for one rank (with CFG and data parallel outside it; with Ring: USP).

Each of the ``u`` ranks of a Ulysses group holds an equal band of token rows and runs the
band loop (:mod:`runtime.band_loop`): every block on its band, the attention layers
exchanging heads for tokens (:mod:`runtime.attention.ulysses`), the guided bands gathered,
the scheduler on the whole latent on every rank. With Ring also active (USP) the same loop
runs over ``u · r`` bands, Ulysses' all-to-alls inside each ring member
(:class:`~runtime.attention.sequence_group.SequenceGroup`). Inside PipeFusion stages the
stage loop takes the same group as its attention hook (:mod:`runtime.strategies.pipefusion`).

Attention is exact, so the result equals the serial one up to floating-point order.

The trace: ``embed``, ``compute`` between all-to-alls, ``collective`` for each all-to-all
(``ring_pass`` for Ring's hops under USP) and the band gather, ``final`` and ``scheduler``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from profiles.catalog.models import ModelPreset
from runtime.attention.kv_state import KVState
from runtime.attention.sequence_group import SequenceMember
from runtime.attention.ulysses import UlyssesExchange, UlyssesMember
from runtime.dist_context import DistContext
from runtime.staged_model import StagedModel
from runtime.band_loop import BandLoop
from runtime.strategies.base import ModelView, PlanShare
from simulator.plan import ParallelPlan


@dataclass(frozen=True)
class SequenceAxis:
    """A sequence-parallel axis (Ulysses or Ring): alone, or both (USP), a band loop; inside
    PipeFusion, the stage loop's attention hook (:attr:`sequence` marks the kind)."""

    axis: str
    sequence: bool = True

    def active(self, plan: ParallelPlan) -> bool:
        return plan.degrees.as_dict().get(self.axis, 1) > 1

    def share(self, plan: ParallelPlan, preset: ModelPreset, coord: Mapping[str, int]) -> PlanShare:
        rows = preset.token_grid(plan.height_px, plan.width_px)[0]
        return PlanShare(steps=plan.steps, warmup=plan.warmup_steps, patch_rows=(rows,),
                         layers=plan.stage_layers(preset)[0])

    def member(self, dist: DistContext) -> SequenceMember:
        """This rank's exchange along the axis, as a member of its sequence group."""
        raise NotImplementedError

    def prepare(self, model: ModelView, share: PlanShare, dist: DistContext) -> BandLoop:
        from runtime.strategies import sequence_group

        state = KVState()
        staged = StagedModel(model.preset, model.transformer, model.rows, model.cols, state)
        group = sequence_group(dist)
        group.install(model.preset.family, staged.blocks, state)
        return BandLoop(staged, group)


@dataclass(frozen=True)
class Ulysses(SequenceAxis):
    axis: str = "ulysses"

    def member(self, dist: DistContext) -> SequenceMember:
        ranks = dist.group_ranks(self.axis)
        exchange = UlyssesExchange(dist, dist.group(self.axis), len(ranks), ranks, cuda=dist.device.type == "cuda")
        return UlyssesMember(exchange, dist.coord[self.axis])


STRATEGY = Ulysses()
