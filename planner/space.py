"""The search space: every parallel plan shape the rules allow for a model on a cluster.

A plan shape is the parallel degrees (their product is the number of devices used, from 1
up to the cluster size, since on PCIe boxes 4 GPUs can beat 8), PipeFusion's patch count
``M`` and its warm-up steps ``W``. Stage splits and placement are chosen later, per shape
(:mod:`planner.stage_split`, :mod:`planner.placement`).

Choices made here and why:

- Degrees are enumerated as ordered factorisations of ``n`` over the registered axes in
  rank order (:data:`simulator.rank_groups.AXES`), cut early by the rules of
  :mod:`simulator.degree_rules` that need only the degrees (each axis' own rules, heads over
  the head-sharding axes, exclusive strategies only beside the replica axes), then every
  shape is checked with :func:`simulator.plan.violations`, the one rule book.
- Patches: the pipeline strategy's ``patch_options`` (PipeFusion: ``M ∈ {N, 2N, 4N, 8N}``
  plus the small counts 2, 4, 8, capped by the latent's token rows); ``M = 1`` without stages.
- Warm-up: exactly ``--min-warmup`` when a stale strategy is on. Each extra warm-up step
  runs one synchronous full-image step, so more than the floor never helps latency or
  throughput; the floor is the user's quality choice. Strategies that never read stale
  activations get ``W = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from profiles.catalog.models import ModelPreset
from simulator.degree_rules import axis_violations, combination_violations, needs_warmup
from simulator.plan import Degrees, DegreesBase, ParallelPlan, violations
from simulator.strategies import STRATEGIES, Registry


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


def degree_options(n: int, model: ModelPreset, rows: int, *, strategies: Registry = STRATEGIES,
                   degrees_type: type[DegreesBase] = Degrees,
                   fixed: dict[str, int] | None = None,
                   rule_cache: dict[tuple[str, int], bool] | None = None) -> Iterator[DegreesBase]:
    """Every ``Degrees`` whose product is ``n`` that passes the rules on degrees alone.

    Example: n=4 for a CFG model yields data4, cfg2×pipefusion2, pipefusion4, data2×ulysses2, …
    ``fixed``: axes held at one degree (``{"data": 1}``: one replica's shapes). ``rule_cache``:
    whether each (axis, degree) breaks its axis' own rules, shared between calls for the same
    model, latent and strategies (those rules read nothing else).
    """
    axes = strategies.axes()
    fixed = fixed or {}
    broken = rule_cache if rule_cache is not None else {}

    def breaks(axis: str, value: int) -> bool:
        key = (axis, value)
        if key not in broken:
            broken[key] = bool(axis_violations(axis, value, model, rows, strategies=strategies))
        return broken[key]

    def extend(index: int, remaining: int, chosen: dict[str, int]) -> Iterator[dict[str, int]]:
        if index == len(axes):
            if remaining == 1:
                yield dict(chosen)
            return
        axis = axes[index]
        values = [fixed[axis]] if axis in fixed else divisors(remaining)
        for value in values:
            if remaining % value:
                continue
            if breaks(axis, value):
                continue
            chosen[axis] = value
            yield from extend(index + 1, remaining // value, chosen)
        chosen.pop(axis, None)

    for values in extend(0, n, {}):
        if not combination_violations(values, model, strategies=strategies):
            yield degrees_type(**values)


def patch_options(degrees: DegreesBase, rows: int) -> list[int]:
    """Patch counts worth trying for ``degrees`` on a latent of ``rows`` token rows."""
    return STRATEGIES.pipeline.patch_options(degrees.pipeline_stages, rows)


def warmup_for(degrees: DegreesBase, options: SpaceOptions) -> int:
    if needs_warmup(degrees.as_dict()):
        return min(options.min_warmup, options.steps)
    return 0


def plan_shapes(model: ModelPreset, options: SpaceOptions, *, topology: str | None = None,
                replicas: bool = True) -> Iterator[ParallelPlan]:
    """Every plan shape (no stage split or placement yet) that :func:`violations` accepts.

    ``replicas=False``: only one data-parallel replica's shapes (``data = 1``), from 1 device
    up, whatever ``min_devices`` says: the search multiplies them into every data degree
    itself (:func:`replica_shapes`), since a replica's rules do not depend on how many there are.
    """
    rows, _ = model.token_grid(options.height_px, options.width_px)
    fixed = None if replicas else {"data": 1}
    first = options.min_devices if replicas else 1
    rule_cache: dict[tuple[str, int], bool] = {}
    for n in range(first, options.max_devices + 1):
        for degrees in degree_options(n, model, rows, fixed=fixed, rule_cache=rule_cache):
            for patches in patch_options(degrees, rows):
                plan = ParallelPlan(model=model.name, height_px=options.height_px, width_px=options.width_px,
                                    steps=options.steps, degrees=degrees, patches=patches,
                                    warmup_steps=warmup_for(degrees, options), topology=topology)
                if not violations(plan, model):
                    yield plan


def replica_shapes(bases: list[ParallelPlan], options: SpaceOptions) -> list[tuple[tuple[int, int, int], ParallelPlan, int]]:
    """``(order, base, data)`` for every ``data × base`` shape :func:`plan_shapes` would yield.

    ``bases``: ``plan_shapes(..., replicas=False)``. ``order`` sorts the pairs the way
    :func:`plan_shapes` yields the shapes (device count, then data degree, then the base's
    place), so ties are broken as an exhaustive enumeration breaks them; the plans
    themselves are built only for the shapes the search prices.
    """
    out = []
    for index, base in enumerate(bases):
        m = base.degrees.world_size()
        for data in range(1, options.max_devices // m + 1):
            if data * m >= options.min_devices:
                out.append(((data * m, data, index), base, data))
    return out


def with_replicas(base: ParallelPlan, data: int) -> ParallelPlan:
    """``base`` (one replica) run as ``data`` replicas."""
    if data == 1:
        return base
    return base.model_copy(update={"degrees": base.degrees.model_copy(update={"data": data})})
