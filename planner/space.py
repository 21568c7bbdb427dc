"""The search space: every parallel plan shape the rules allow for a model on a cluster.

A plan shape is the parallel degrees (their product is the number of devices used, from 1
up to the cluster size, since on PCIe boxes 4 GPUs can beat 8), PipeFusion's patch count
``M`` and its warm-up steps ``W``. Stage splits and placement are chosen later, per shape
(:mod:`planner.stage_split`, :mod:`planner.placement`).

Choices made here and why:

- Degrees are enumerated as ordered factorisations of ``n`` over
  ``data × cfg × pipefusion × distrifusion × ring × ulysses × tensor``, cut early by the
  cheap per-axis rules (CFG only for CFG models, heads divisible, layers ≥ stages,
  DistriFusion and tensor parallel only beside CFG and data), then every shape is checked
  with :func:`simulator.plan.violations`, the one rule book.
- Patches: ``M ∈ {N, 2N, 4N, 8N}`` (published sweeps put the best near N to 2N) plus the
  small counts 2, 4, 8 (fewer patches than stages leaves stages idle, but less staleness),
  all capped by the latent's token rows. Strategies without patches use ``M = 1``.
- Warm-up: exactly ``--min-warmup`` for the stale strategies (PipeFusion, DistriFusion).
  Each extra warm-up step runs one synchronous full-image step, so more than the floor
  never helps latency or throughput; the floor is the user's quality choice. Strategies
  that never read stale activations get ``W = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from profiles.models import ModelPreset
from simulator.plan import Degrees, ParallelPlan, violations
from simulator.rank_groups import AXES

STALE_AXES = ("pipefusion", "distrifusion")
"""Strategies that attend to one-step-old activations after warm-up."""
EXCLUSIVE_AXES = ("distrifusion", "tensor")
"""Strategies that combine only with cfg and data."""


@dataclass(frozen=True)
class SpaceOptions:
    """What the user asked for: resolution, steps and the bounds of the search."""

    height_px: int
    width_px: int
    steps: int
    max_devices: int
    min_warmup: int = 1
    """Warm-up steps every stale strategy must run (quality floor)."""
    min_devices: int = 1


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _axis_allowed(axis: str, value: int, model: ModelPreset, rows: int) -> bool:
    arch = model.arch
    if value == 1:
        return True
    if axis == "cfg":
        return value == 2 and model.uses_cfg
    if axis == "pipefusion":
        return value <= model.layers
    if axis in ("ulysses", "tensor"):
        return arch.heads % value == 0
    if axis == "distrifusion":
        return value <= rows
    return True


def degree_options(n: int, model: ModelPreset, rows: int) -> Iterator[Degrees]:
    """Every ``Degrees`` whose product is ``n`` that passes the per-axis rules.

    Example: n=4 for a CFG model yields data4, cfg2×pipefusion2, pipefusion4, ulysses2×ring2, …
    """
    def extend(index: int, remaining: int, chosen: dict[str, int]) -> Iterator[dict[str, int]]:
        if index == len(AXES):
            if remaining == 1:
                yield dict(chosen)
            return
        axis = AXES[index]
        for value in divisors(remaining):
            if not _axis_allowed(axis, value, model, rows):
                continue
            chosen[axis] = value
            yield from extend(index + 1, remaining // value, chosen)
        chosen.pop(axis, None)

    for values in extend(0, n, {}):
        active = [a for a, v in values.items() if v > 1]
        exclusive = [a for a in active if a in EXCLUSIVE_AXES]
        if exclusive and any(a not in ("cfg", "data", exclusive[0]) for a in active):
            continue
        if values["ulysses"] * values["tensor"] > 1 and model.arch.heads % (values["ulysses"] * values["tensor"]):
            continue
        yield Degrees(**values)


def patch_options(degrees: Degrees, rows: int) -> list[int]:
    """Patch counts worth trying for ``degrees`` on a latent of ``rows`` token rows."""
    stages = degrees.pipefusion
    if stages == 1:
        return [1]
    wanted = {stages * k for k in (1, 2, 4, 8)} | {2, 4, 8}
    return sorted(m for m in wanted if 2 <= m <= rows)


def warmup_for(degrees: Degrees, options: SpaceOptions) -> int:
    if any(getattr(degrees, axis) > 1 for axis in STALE_AXES):
        return min(options.min_warmup, options.steps)
    return 0


def plan_shapes(model: ModelPreset, options: SpaceOptions, *, topology: str | None = None) -> Iterator[ParallelPlan]:
    """Every plan shape (no stage split or placement yet) that :func:`violations` accepts."""
    rows, _ = model.token_grid(options.height_px, options.width_px)
    for n in range(options.min_devices, options.max_devices + 1):
        for degrees in degree_options(n, model, rows):
            for patches in patch_options(degrees, rows):
                plan = ParallelPlan(model=model.name, height_px=options.height_px, width_px=options.width_px,
                                    steps=options.steps, degrees=degrees, patches=patches,
                                    warmup_steps=warmup_for(degrees, options), topology=topology)
                if not violations(plan, model):
                    yield plan
