"""Every plan shape the search enumerates on cpu2 and cpu4 runs under pfrun, not just the winner (issue 11).

Why: the search ranks every shape of :func:`planner.space.plan_shapes`; a shape it can pick that
pfrun then fails on is a broken promise. This test asks :func:`simulator.runnable.unrunnable_reason`
which shapes pfrun claims to run — so a new executor (Ring, tensor parallel, DistriFusion) is
picked up the moment its strategy says it runs — and runs each through the real launcher
(``runtime.run.execute``: one process per rank, gloo on CPU), at 128 px, T = 2 steps:

- fresh shapes (no stale axis): the latent matches serial's to float32 tolerance, ``1e-5 ×`` the
  latent's scale (``1e-3 ×`` with CFG parallel: a batch of one and a batch of two take other fp32
  kernels, see tests/runtime/test_ulysses.py);
- stale shapes (PipeFusion patches, DistriFusion): once as enumerated, W = 1 of T = 2 (one warm-up
  step, then a patched step on stale K/V): it must finish with a finite latent; and once with
  W = T, where it must match serial to the same tolerance.

Budget (≤ ~3 min on an idle 2-core machine; 1 min 42 s measured on a loaded one, 2026-12-02,
53 selected shapes): every runnable shape × every tiny preset is about 200 shapes on cpu4 (cpu2's shapes are a subset: cpu4 enumerates 1 to 4 ranks), over 200 launches.
So the selection is round robin: every distinct shape (degrees and patches) runs once, on the
next preset in turn that enumerates it, and every preset runs at least one shape of each axis it
has runnable. ``PFPLAN_EVERY_SHAPE=1`` runs every shape on every preset instead.

The shapes pfrun refuses are listed by :func:`refused` (and in docs/runtime.md by
benchmarks/runtime_exactness.py): none since issue 11 (295 shapes over the seven tiny presets on
cpu2/cpu4; the last 10 refused, 1-row patches under PipeFusion × Ulysses / Ring, now split by
tokens), and ``test_no_shape_the_search_enumerates_is_refused`` holds it there.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from functools import lru_cache

import pytest

from planner.space import SpaceOptions, plan_shapes
from profiles.catalog.models import load_model
from simulator.degree_rules import needs_warmup
from simulator.plan import ParallelPlan
from simulator.runnable import unrunnable_reason
from simulator.strategies import STRATEGIES

from .helpers import max_diff, plan, run

pytestmark = pytest.mark.slow

PRESETS = ("pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny", "hunyuan-tiny", "wan-tiny", "qwen-image-tiny")
TOPOLOGY_RANKS = {"cpu2": 2, "cpu4": 4}
PX = 128
T = 2
"""Two steps: one warm-up step, then one step on patches (stale K/V)."""


def enumerated(preset: str, ranks: int) -> list[ParallelPlan]:
    return list(plan_shapes(load_model(preset), SpaceOptions(PX, PX, T, ranks), topology=f"cpu{ranks}"))


def key(shape: ParallelPlan) -> tuple[str, int]:
    return shape.degrees.label(), shape.patches


def runnable_by_preset() -> dict[str, list[ParallelPlan]]:
    """Each preset's runnable shapes over cpu2 and cpu4 (one copy of each: cpu4's include cpu2's)."""
    out: dict[str, list[ParallelPlan]] = {}
    for preset in PRESETS:
        model = load_model(preset)
        seen: dict[tuple[str, int], ParallelPlan] = {}
        for ranks in sorted(TOPOLOGY_RANKS.values()):
            for shape in enumerated(preset, ranks):
                if key(shape) not in seen and unrunnable_reason(shape, model) is None:
                    seen[key(shape)] = shape
        out[preset] = list(seen.values())
    return out


def refused() -> list[tuple[str, str, str]]:
    """(preset, shape, reason) of every shape enumerated on cpu4 that pfrun refuses."""
    return [(preset, f"{shape.degrees.label()}/M{shape.patches}", reason)
            for preset in PRESETS for shape in enumerated(preset, max(TOPOLOGY_RANKS.values()))
            if (reason := unrunnable_reason(shape, load_model(preset)))]


def axes_of(shape: ParallelPlan) -> set[str]:
    return set(shape.degrees.active()) or {"serial"}


def selection() -> list[tuple[str, ParallelPlan]]:
    """Round robin over the presets (see the module docstring), or every pair with PFPLAN_EVERY_SHAPE=1."""
    by_preset = runnable_by_preset()
    if os.environ.get("PFPLAN_EVERY_SHAPE") == "1":
        return [(p, s) for p in PRESETS for s in by_preset[p]]
    chosen: list[tuple[str, ParallelPlan]] = []
    turn = 0
    keys = list(dict.fromkeys(key(s) for p in PRESETS for s in by_preset[p]))
    for k in keys:
        owners = [p for p in PRESETS if any(key(s) == k for s in by_preset[p])]
        preset = owners[turn % len(owners)]
        turn += 1
        chosen.append((preset, next(s for s in by_preset[preset] if key(s) == k)))
    for preset in PRESETS:
        covered = set().union(*(axes_of(s) for p, s in chosen if p == preset))
        for shape in by_preset[preset]:
            missing = axes_of(shape) - covered
            if missing:
                chosen.append((preset, shape))
                covered |= axes_of(shape)
    return chosen


CHOSEN = selection()


@lru_cache(maxsize=None)
def serial(preset: str):
    return run(plan(preset, steps=T))


def tolerance(shape: ParallelPlan, scale: float) -> float:
    """fp32 rounding of a different summation order (head shards, ring merges), carried through
    the scheduler: 2e-5 of the latent's scale (HunyuanDiT's DDPM step divides by √ᾱ ≈ 0.006 at
    step 0; tensor parallel measured 1.2e-5 there), 1e-3 with CFG parallel (batch 1 vs 2 kernels)."""
    return (1e-3 if shape.degrees.as_dict().get("cfg", 1) > 1 else 2e-5) * scale


@pytest.mark.parametrize("preset, shape", CHOSEN,
                         ids=[f"{p}-{s.degrees.label()}-M{s.patches}" for p, s in CHOSEN])
def test_the_shape_runs_and_matches_serial(preset, shape):
    reference = serial(preset)
    scale = float(reference.latents[0].abs().max())
    stale = needs_warmup(shape.degrees.as_dict(), shape.patches_in_effect)
    if stale:
        assert shape.warmup_steps < T  # the enumerated shape: patches on stale K/V really run
        result = run(shape)
        assert result.latents and all(bool(latent.isfinite().all()) for latent in result.latents.values())
        shape = shape.model_copy(update={"warmup_steps": T})
    result = run(shape)
    assert set(result.latents) == set(range(shape.degrees.images_per_generation()))
    diff = max_diff(result, reference)
    assert math.isfinite(diff) and diff <= tolerance(shape, scale), \
        f"{shape.degrees.label()} M={shape.patches} W={shape.warmup_steps}: {diff:.3g} (scale {scale:.3g})"


def test_the_selection_covers_every_shape_and_every_preset_axis():
    by_preset = runnable_by_preset()
    chosen = {(p, key(s)) for p, s in CHOSEN}
    assert {key(s) for _, s in CHOSEN} == {key(s) for p in PRESETS for s in by_preset[p]}
    for preset in PRESETS:
        axes = set().union(*(axes_of(s) for s in by_preset[preset]))
        assert axes == set().union(*(axes_of(s) for p, s in CHOSEN if p == preset)), preset
        assert {"serial", STRATEGIES.pipeline.axis} <= axes  # every family runs serial and PipeFusion
    assert len(chosen) == len(CHOSEN)


def test_no_shape_the_search_enumerates_is_refused():
    """Issue 11's promise: every shape the search can rank on cpu2 / cpu4 is one pfrun runs."""
    rows = refused()
    reasons = Counter(reason for _, _, reason in rows)
    assert not rows, "pfrun refuses: " + "; ".join(f"{n} × {reason}" for reason, n in reasons.most_common())
