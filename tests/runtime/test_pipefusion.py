"""PipeFusion on CPU with gloo: exact with W = T, bounded staleness with W < T."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.plan import patch_rows
from simulator.schedule import units as schedule_units

from .helpers import max_diff, plan, run

T = 4


@pytest.fixture(scope="module")
def serial():
    return {name: run(plan(name, steps=T)) for name in ("pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny",
                                                         "hunyuan-tiny")}


@pytest.mark.parametrize("name", ["pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny", "hunyuan-tiny"])
def test_two_stages_with_full_warmup_reproduce_serial(name, serial):
    result = run(plan(name, steps=T, degrees={"pipefusion": 2}, patches=4, warmup_steps=T))
    assert max_diff(result, serial[name]) == 0  # same operations in the same order on one thread each


@pytest.mark.parametrize("patches", [2, 4, 8])
def test_four_stages_reproduce_serial_for_every_patch_count(patches, serial):
    """4 ranks (one block each), M < N, M = N and M > N."""
    result = run(plan("pixart-tiny", steps=T, degrees={"pipefusion": 4}, patches=patches, warmup_steps=T))
    assert max_diff(result, serial["pixart-tiny"]) <= 1e-5


def test_uneven_stage_split_reproduces_serial(serial):
    result = run(plan("flux-tiny", steps=T, degrees={"pipefusion": 2}, patches=2, warmup_steps=T,
                      stage_split=[1, 5]))
    assert max_diff(result, serial["flux-tiny"]) <= 1e-5


def test_hunyuan_long_skips_cross_three_uneven_stages(serial):
    """Blocks 0, 1 push skips that blocks 5, 4 pop: with split [1, 3, 2] they cross two stage boundaries."""
    result = run(plan("hunyuan-tiny", steps=T, degrees={"pipefusion": 3}, patches=2, warmup_steps=T,
                      stage_split=[1, 3, 2]))
    assert max_diff(result, serial["hunyuan-tiny"]) <= 1e-5


def test_one_warmup_step_gives_a_finite_different_result(serial):
    result = run(plan("sd3-tiny", steps=T, degrees={"pipefusion": 2}, patches=4, warmup_steps=1))
    diff = max_diff(result, serial["sd3-tiny"])
    assert math.isfinite(diff) and result.latents[0].isfinite().all()
    assert diff > 0  # patches attended to stale K/V: the price is visible


def test_more_warmup_steps_do_not_increase_the_difference(serial):
    """Fixed seed, pixart-tiny, M=4 on 2 stages: W = 1, 2, 3, 4."""
    diffs = [max_diff(run(plan("pixart-tiny", steps=T, degrees={"pipefusion": 2}, patches=4, warmup_steps=w)),
                      serial["pixart-tiny"]) for w in (1, 2, 3, 4)]
    assert all(b <= a for a, b in zip(diffs, diffs[1:])), diffs
    assert diffs[-1] <= 1e-5 < diffs[0]


def test_patches_on_one_rank_exercise_the_stale_path(serial):
    """PipeFusion's patch and K/V paths without any transfer (what a 1-GPU check runs)."""
    stale = run(plan("dit-tiny", steps=T, patches=4, warmup_steps=1))
    fresh = run(plan("dit-tiny", steps=T, patches=4, warmup_steps=T))
    assert max_diff(fresh, serial["dit-tiny"]) <= 1e-5
    assert max_diff(stale, serial["dit-tiny"]) > 1e-5


@given(steps=st.integers(1, 6), warmup=st.integers(1, 6), rows=st.integers(1, 12), patches=st.integers(2, 12))
def test_schedule_runs_every_patch_of_every_step_once(steps, warmup, rows, patches):
    """The stage loop runs simulator/schedule.py's units (the simulator's own order)."""
    patches = min(patches, rows)
    if patches == 1:  # one token row: the one-patch case below
        return
    units = schedule_units(steps, warmup, patch_rows(rows, patches))
    w = min(warmup, steps)
    assert [u.step for u in units] == sorted(u.step for u in units)
    assert sum(u.full for u in units) == w
    for step in range(w, steps):
        spans = [(u.r0, u.r1) for u in units if u.step == step]
        assert [u.patch for u in units if u.step == step] == list(range(patches))
        assert spans[0][0] == 0 and spans[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


@given(steps=st.integers(1, 6), warmup=st.integers(1, 6), rows=st.integers(1, 12))
def test_one_patch_runs_every_step_as_one_full_unit(steps, warmup, rows):
    """With one patch (PipeFusion stages, patches=1) every step is one full-image unit, as the simulator runs it."""
    units = schedule_units(steps, warmup, patch_rows(rows, 1))
    assert [(u.step, u.patch, u.r0, u.r1) for u in units] == [(i, None, 0, rows) for i in range(steps)]


def test_stages_with_one_patch_and_one_warmup_step_reproduce_serial(serial):
    """After warm-up, full units on 2 stages: K/V buffers are refreshed whole, so the result is serial's."""
    result = run(plan("pixart-tiny", steps=T, degrees={"pipefusion": 2}, patches=1, warmup_steps=1))
    assert max_diff(result, serial["pixart-tiny"]) <= 1e-5


def test_each_stage_keeps_only_its_blocks_weights():
    from runtime.model_build import build_transformer, count_parameters, transformer_blocks
    from profiles.catalog.models import load_model

    model = build_transformer(load_model("flux-tiny"))
    blocks = transformer_blocks(model, "flux")
    total = count_parameters(model)
    block_params = [sum(p.numel() for p in b.parameters()) for b in blocks]
    result = run(plan("flux-tiny", steps=1, degrees={"pipefusion": 2}, patches=2, warmup_steps=1,
                      stage_split=[2, 4]))
    shared = total - sum(block_params)
    assert result.params_per_rank == [shared + sum(block_params[:2]), shared + sum(block_params[2:])]


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "FlowMatchEulerDiscreteScheduler", "DDIMScheduler"])
def test_split_scheduler_steps_patches_exactly_like_the_whole_latent(name):
    import diffusers
    import torch

    from runtime.strategies.pipefusion import split_scheduler

    gen = torch.Generator().manual_seed(0)
    whole = getattr(diffusers, name)()
    whole.set_timesteps(5)
    x = torch.randn(1, 4, 8, 6, generator=gen)
    outputs = [torch.randn(1, 4, 8, 6, generator=gen) for _ in range(5)]
    ref = x.clone()
    for t, eps in zip(whole.timesteps, outputs):
        ref = whole.step(eps, t, ref, return_dict=False)[0]
    split = getattr(diffusers, name)()
    split.set_timesteps(5)
    y = x.clone()
    for t, eps in zip(split.timesteps[:2], outputs[:2]):  # two whole-latent (warm-up) steps
        y = split.step(eps, t, y, return_dict=False)[0]
    bands = [slice(0, 3), slice(3, 8)]
    copies = [split_scheduler(split, y.shape, rows) for rows in bands]
    for t, eps in zip(split.timesteps[2:], outputs[2:]):
        for sched, rows in zip(copies, bands):
            y[:, :, rows] = sched.step(eps[:, :, rows], t, y[:, :, rows], return_dict=False)[0]
    assert torch.allclose(y, ref, atol=1e-6, rtol=0)
