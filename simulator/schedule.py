"""PipeFusion's micro-step order, written once: the simulator's actors and pfrun's stage loop both read it.

Every stage runs the same sequence of *units*: the whole image in each of the ``W``
synchronous warm-up steps, then patch ``m`` of step ``t`` for every later step (one unit
per step when there are no patches). A unit enters stage ``d > 0`` from stage ``d − 1``;
it enters stage 0 once the last stage has sent back the latent rows it updated at the
previous step (the ring back to stage 0). After a full (warm-up) step the whole latent
comes back at once, so every patch of the next step waits for that one return.

Worked example, ``steps=3, warmup=1, patch_rows=[2, 2]``::

    unit            rows   stage 0 waits for the return of
    step 0 (full)   0-4    nothing (the initial latent)
    step 1 patch 0  0-2    step 0 (whole latent)        <- a new return arrives
    step 1 patch 1  2-4    step 0 (whole latent)           (already here)
    step 2 patch 0  0-2    step 1 patch 0               <- a new return arrives
    step 2 patch 1  2-4    step 1 patch 1               <- a new return arrives

The last stage sends every unit's latent rows back except at the last step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    """One pass of a stage: a full step (``patch`` None) or one patch of a step, on token rows [r0, r1)."""

    step: int
    patch: int | None
    r0: int
    r1: int

    @property
    def full(self) -> bool:
        return self.patch is None


def row_bounds(patch_rows: list[int]) -> list[tuple[int, int]]:
    """``[3, 3, 2]`` → ``[(0, 3), (3, 6), (6, 8)]``."""
    out, start = [], 0
    for n in patch_rows:
        out.append((start, start + n))
        start += n
    return out


def units(steps: int, warmup: int, patch_rows: list[int]) -> list[Unit]:
    """Units in execution order: ``(3, 1, [2, 2])`` → full step 0, then patches (0-2, 2-4) of steps 1, 2.

    With a single patch every step is one full-image unit (``patch`` None), warm-up or not.
    """
    rows = sum(patch_rows)
    warm = min(warmup, steps)
    out = [Unit(i, None, 0, rows) for i in range(warm)]
    for i in range(warm, steps):
        if len(patch_rows) == 1:
            out.append(Unit(i, None, 0, rows))
        else:
            out.extend(Unit(i, m, r0, r1) for m, (r0, r1) in enumerate(row_bounds(patch_rows)))
    return out


def unit_count(steps: int, warmup: int, patches: int) -> int:
    """``len(units(steps, warmup, rows))`` for ``patches`` patches, without building the list."""
    warm = min(warmup, steps)
    return warm + (steps - warm) * max(patches, 1)


def unit_at(index: int, warmup: int, bounds: list[tuple[int, int]]) -> Unit:
    """``units(...)[index]`` for patches on the token rows ``bounds`` (:func:`row_bounds`), in
    constant time: a simulation of a million steps never builds the list. ``(4, 1, [(0, 2), (2, 4)])``
    → step 2, patch 1."""
    rows = bounds[-1][1]
    if index < warmup:
        return Unit(index, None, 0, rows)
    if len(bounds) == 1:
        return Unit(index, None, 0, rows)
    step, patch = divmod(index - warmup, len(bounds))
    r0, r1 = bounds[patch]
    return Unit(warmup + step, patch, r0, r1)


def latent_source(unit: Unit, warmup: int, patches: int) -> tuple[int, int | None] | None:
    """The (step, patch) whose returned latent stage 0 needs before ``unit``; None at step 0.

    ``patch`` None means the whole latent (the previous step was full).
    """
    return latent_source_of(unit.step, unit.patch, warmup, patches)


def latent_source_of(step: int, patch: int | None, warmup: int, patches: int) -> tuple[int, int | None] | None:
    """:func:`latent_source` of the unit (``step``, ``patch``), without building it (asked once per
    stage-0 pass)."""
    if step == 0:
        return None
    return (step - 1, None if step - 1 < warmup or patches == 1 else patch)


def receives_new_latent(unit: Unit, warmup: int, patches: int) -> bool:
    """True when ``unit`` is the first to need its :func:`latent_source` (one receive per return)."""
    source = latent_source(unit, warmup, patches)
    if source is None:
        return False
    return source[1] is not None or unit.patch in (None, 0)


def returns_latent(unit: Unit, steps: int) -> bool:
    """The last stage sends the unit's updated rows back to stage 0 (all but the last step)."""
    return unit.step < steps - 1
