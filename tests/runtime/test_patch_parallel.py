"""DistriFusion (patch parallelism with stale K/V) on CPU with gloo.

With every step synchronous (warm-up = steps) each band attends over wholly fresh K/V, so
the result equals serial up to float order. With one warm-up step the other bands' K/V are
one step old: the result differs from serial by a little, measured as a PSNR against it
(printed; run with ``-s`` to see the numbers docs/runtime.md records).
"""

from __future__ import annotations

import math
from functools import lru_cache

import pytest
import torch

from profiles.catalog.models import load_model
from runtime.run import RunResult
from simulator.runnable import unrunnable_reason

from .helpers import max_diff, plan, run

T = 3
AXIS = "distrifusion"

PSNR_FLOOR_DB = {"pixart-tiny": 60.0, "dit-tiny": 12.0, "hunyuan-tiny": 20.0, "sd3-tiny": 40.0, "flux-tiny": 40.0}
"""Measured with warm-up 1 of 3 steps at 2 ranks (2026-12-01): pixart 94.1, dit 18.0, hunyuan 30.3, sd3 66.6,
flux 71.6 dB; each floor is well under its measurement. The random-weight DiT is the most sensitive to stale
K/V: PipeFusion's own stale path (pipefusion=1, patches=2, warmup=1) reaches 21.6 dB on it."""


@lru_cache(maxsize=None)
def serial(name: str, steps: int = T) -> RunResult:
    return run(plan(name, steps=steps))


def relative_diff(result: RunResult, reference: RunResult) -> float:
    return max_diff(result, reference) / float(reference.latents[0].abs().max())


def psnr_db(result: torch.Tensor, reference: torch.Tensor) -> float:
    """PSNR of ``result`` against ``reference`` over the reference's value range."""
    mse = float(((result - reference) ** 2).mean())
    peak = float(reference.max() - reference.min())
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


@pytest.mark.parametrize("name", ["pixart-tiny", "dit-tiny", "hunyuan-tiny", "sd3-tiny", "flux-tiny"])
def test_all_synchronous_steps_reproduce_serial(name):
    result = run(plan(name, steps=T, degrees={AXIS: 2}, warmup_steps=T))
    assert relative_diff(result, serial(name)) <= 1e-5
    assert sorted(result.latents) == [0]


def test_four_ranks_reproduce_serial():
    result = run(plan("pixart-tiny", steps=2, degrees={AXIS: 4}, warmup_steps=2))
    assert relative_diff(result, serial("pixart-tiny", 2)) <= 1e-5


def test_cfg_parallel_around_it_equals_serial_cfg():
    """4 ranks: two CFG groups of two patch-parallel ranks each."""
    result = run(plan("pixart-tiny", steps=2, degrees={"cfg": 2, AXIS: 2}, warmup_steps=2))
    assert relative_diff(result, serial("pixart-tiny", 2)) <= 1e-5


@pytest.mark.parametrize("name", ["pixart-tiny", "dit-tiny", "hunyuan-tiny", "sd3-tiny", "flux-tiny"])
def test_one_warmup_step_drifts_from_serial_by_a_little(name):
    result = run(plan(name, steps=T, degrees={AXIS: 2}, warmup_steps=1))
    reference = serial(name)
    psnr = psnr_db(result.latents[0], reference.latents[0])
    print(f"\n{name}: {AXIS}=2, warm-up 1 of {T} steps: PSNR against serial {psnr:.1f} dB, "
          f"max abs diff {max_diff(result, reference):.3g}")
    assert max_diff(result, reference) > 0  # stale K/V were read: not the synchronous path
    assert math.isfinite(psnr) and psnr > PSNR_FLOOR_DB[name]


def test_trace_has_synchronous_gathers_in_warmup_and_exposed_waits_after():
    """Step 0 gathers every layer's K/V before attending; step 1 starts the gathers and waits for none;
    step 2 waits for step 1's (the exposed part) and starts none, since no step reads them."""
    result = run(plan("pixart-tiny", steps=T, degrees={AXIS: 2}, warmup_steps=1))
    layers = load_model("pixart-tiny").arch.layers
    for rank_events in result.events:
        kv = [e for e in rank_events if e["name"] == "all_gather kv"]
        assert all(e["cat"] == "collective" and e["args"]["bytes"] > 0 for e in kv)
        by_step = {s: [e["args"]["overlapped"] for e in kv if e["args"]["step"] == s] for s in range(T)}
        assert by_step == {0: [False] * layers, 1: [], 2: [True] * layers}
        assert [e["args"]["warmup"] for e in rank_events if e["name"] == "blocks" and e["args"]["layer"] == 0
                and e["cat"] == "compute"][:1] == [True]
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in rank_events
                       if e["cat"] in ("compute", "collective", "embed", "final", "scheduler"))
        assert all(end <= nxt + 1e-3 for (_, end), (nxt, _) in zip(spans, spans[1:]))


def test_data_parallel_around_it_runs_each_replica():
    both = run(plan("dit-tiny", steps=2, degrees={"data": 2, AXIS: 2}, warmup_steps=2), seed=5)
    assert sorted(both.latents) == [0, 1]
    assert max_diff(both, run(plan("dit-tiny", steps=2), seed=5)) <= 1e-5
    alone = run(plan("dit-tiny", steps=2), seed=6)
    assert float((both.latents[1] - alone.latents[0]).abs().max()) <= 1e-5


@pytest.mark.parametrize("name", ["sd3-tiny", "flux-tiny"])
def test_uneven_bands_run_and_reproduce_serial_when_synchronous(name):
    """3 ranks on 8 token rows: bands of 3, 3 and 2 rows, padded to 3 for each gather (issue 11)."""
    result = run(plan(name, steps=2, degrees={AXIS: 3}, warmup_steps=2))
    assert sorted(result.latents) == [0]
    assert relative_diff(result, serial(name, 2)) <= 1e-5


def test_patches_are_refused_with_the_reason():
    """Uneven bands run since issue 11 (144 px: 9 rows on 2 ranks); PipeFusion patches do not."""
    dit = load_model("dit-tiny")
    assert unrunnable_reason(plan("dit-tiny", px=144, degrees={AXIS: 2}, warmup_steps=1), dit) is None
    reason = unrunnable_reason(plan("dit-tiny", degrees={AXIS: 2}, patches=2, warmup_steps=1), dit)
    assert reason and reason.startswith(f"degrees.{AXIS}") and "patches" in reason
    for name in ("pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny", "hunyuan-tiny"):
        assert unrunnable_reason(plan(name, degrees={"cfg": 2, AXIS: 2}, warmup_steps=1), load_model(name)) is None


def test_the_first_step_is_synchronous_even_without_warmup():
    """warmup_steps = 0 runs like warm-up 1: there are no earlier K/V to stand in at step 0."""
    cold = run(plan("pixart-tiny", steps=2, degrees={AXIS: 2}, warmup_steps=0))
    warm = run(plan("pixart-tiny", steps=2, degrees={AXIS: 2}, warmup_steps=1))
    assert max_diff(cold, warm) == 0.0
