"""What a runtime strategy provides, and the typed setup a rank's denoising loop runs on.

pfrun answers three questions for every rank, each through one kind of strategy:

* **which image** the rank works on (its replica: seed and prompt): a :class:`ReplicaStrategy`
  (``data``);
* **which CFG branches** it runs and how their predictions become one: a :class:`GuidanceStrategy`
  (``cfg``), which hands out a :class:`Guidance`;
* **how it denoises** together with its peers: a :class:`LoopStrategy` (``serial``,
  ``pipefusion``, ``ulysses``), whose :meth:`~LoopStrategy.prepare` stages the model (its
  attention processors installed) and returns the :class:`RankLoop` that runs the steps.

A module ``runtime/strategies/<axis>.py`` holds one strategy as ``STRATEGY``, whose ``axis``
is the module's name; :mod:`runtime.strategies` finds it by that name, so a new axis (Ring,
tensor parallel) is one new module and nothing else in the runtime.

The setup a loop runs on, :class:`StageSetup`, is five typed groups: what the model is
(:class:`ModelView`), what the replica starts from (:class:`RankInputs`), what the plan asks
of this rank (:class:`PlanShare`), where the rank sits (:class:`RankPlace`) and how it
records (:class:`Recording`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, runtime_checkable

import torch

from profiles.catalog.models import ModelPreset
from runtime.dist_context import DistContext
from runtime.measure import Recorder
from runtime.families import adapter_for
from runtime.model_inputs import Branch
from runtime.sampling import Sampler, Sampling
from simulator.plan import ParallelPlan

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

    from runtime.staged_model import StagedModel


@dataclass(frozen=True)
class ModelView:
    """What the model is: the preset, diffusers' transformer and scheduler, the token grid."""

    preset: ModelPreset
    transformer: torch.nn.Module
    scheduler: SchedulerMixin
    rows: int
    cols: int


@dataclass(frozen=True)
class PlanShare:
    """What the plan asks of this rank: the steps, the synchronous warm-up, its patches and blocks."""

    steps: int
    warmup: int
    """Full-image steps before the first patch step (``steps`` where nothing is stale)."""
    patch_rows: tuple[int, ...]
    """Token rows of each patch (one entry: the whole image)."""
    layers: range
    """The blocks this rank runs."""
    stage: int = 0
    stages: int = 1

    @property
    def last_stage(self) -> bool:
        return self.stage == self.stages - 1


@dataclass(frozen=True)
class RankPlace:
    """Where this rank sits: its groups and transfers, and the ranks of its pipeline in stage order."""

    dist: DistContext
    pipeline: tuple[int, ...]


@dataclass
class Recording:
    """How the rank records: its trace spans, the fault hook per step, when each step ended."""

    rec: Recorder
    on_step: Callable[[int], None] = lambda step: None
    step_end_s: list[float] = field(default_factory=list)


class Guidance(Protocol):
    """How the CFG branches a rank runs become one noise prediction (from the ``cfg`` strategy)."""

    branches: tuple[str, ...]
    """Conditioning branches this rank runs, as one batch in this order."""
    writes_output: bool
    """Whether this rank's final latent is the replica's output (one CFG branch writes)."""

    def __call__(self, noise: torch.Tensor, rec: Recorder, **tags: object) -> torch.Tensor:
        """The guided prediction for ``noise`` (the rank's batch); ``tags`` label trace spans."""
        ...


@dataclass(frozen=True)
class RankInputs:
    """What the replica starts from: its conditioning batch, initial latent, noise generator, guidance."""

    branch: Branch
    latent: torch.Tensor
    guidance: Guidance
    generator: torch.Generator | None = None
    sampling: Sampling | None = None
    """How the pipeline samples (its timesteps, input scaling, the generator); None: plain ``set_timesteps``."""

    def sampler(self, model: ModelView, steps: int) -> Sampler:
        """A loop's own scheduler with the pipeline's timesteps (:mod:`runtime.sampling`)."""
        sampling = self.sampling or Sampling(scheduler=model.scheduler, steps=steps, generator=self.generator,
                                             scales_input=adapter_for(model.preset.family).scales_model_input)
        return sampling.start()


@dataclass
class StageSetup:
    """Everything one rank's denoising loop needs, in five groups."""

    model: ModelView
    inputs: RankInputs
    share: PlanShare
    place: RankPlace
    recording: Recording


@runtime_checkable
class RuntimeStrategy(Protocol):
    """One parallel axis on the runtime side; ``axis`` is its plan name and its module's name."""

    axis: str

    def active(self, plan: ParallelPlan) -> bool:
        """Whether ``plan`` uses this axis."""
        ...


@runtime_checkable
class ReplicaStrategy(RuntimeStrategy, Protocol):
    """Which image a rank makes: its replica, seed and prompt."""

    def replica(self, coord: Mapping[str, int]) -> int: ...

    def seed(self, base_seed: int, replica: int) -> int: ...

    def pick(self, options: tuple[str, ...], replica: int) -> str | None:
        """The replica's entry of a per-replica option list (prompts, embedding files); None if empty."""
        ...


@runtime_checkable
class GuidanceStrategy(RuntimeStrategy, Protocol):
    """Which CFG branches a rank runs and how their predictions are combined."""

    def guidance(self, preset: ModelPreset, plan: ParallelPlan, coord: Mapping[str, int], dist: DistContext,
                 scale: float) -> Guidance: ...


class RankLoop(Protocol):
    """A rank's denoising loop, prepared: the staged model it runs (None: diffusers' own forward)."""

    staged: StagedModel | None

    def run(self, s: StageSetup) -> torch.Tensor | None:
        """Every step of this rank's share; the final latent where the rank holds it whole, else None."""
        ...


@runtime_checkable
class LoopStrategy(RuntimeStrategy, Protocol):
    """How a rank denoises with its peers. A rank runs the one loop its plan activates (serial if none)."""

    def share(self, plan: ParallelPlan, preset: ModelPreset, coord: Mapping[str, int]) -> PlanShare:
        """What ``plan`` asks of the rank at ``coord``."""
        ...

    def prepare(self, model: ModelView, share: PlanShare, dist: DistContext) -> RankLoop:
        """Stage the model for this loop (attention processors installed) before the run's clock starts."""
        ...
