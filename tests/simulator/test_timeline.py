"""Exact simulated timelines on tiny scenarios with a constant cost model (simpy style)."""

from __future__ import annotations

import pytest

from profiles.catalog.models import load_model
from simulator.engine import simulate
from simulator.plan import Degrees, ParallelPlan
from tests.simulator.fakes import FREE_COMM, ConstantCost, star_cluster

TINY = load_model("pixart-tiny")  # 4 blocks, 16×16 tokens, CFG
PIXART = load_model("pixart-alpha")  # 28 blocks


def timeline(result):
    """The log without zero-length events (transfers over free links), ordered by start time."""
    return sorted((e for e in result.log() if e[4] != e[5]), key=lambda e: (e[4], e[0], e[1]))


def test_serial_timeline():
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=2)
    result = simulate(plan, TINY, star_cluster(1), ConstantCost(1.0, 0.25, 0.5), record_trace=True)
    assert timeline(result) == [
        ("d0c0s0", "embed", 0, None, 0.0, 0.25),
        ("d0c0s0", "compute", 0, None, 0.25, 4.25),
        ("d0c0s0", "final", 0, None, 4.25, 4.75),
        ("d0c0s0", "embed", 1, None, 4.75, 5.0),
        ("d0c0s0", "compute", 1, None, 5.0, 9.0),
        ("d0c0s0", "final", 1, None, 9.0, 9.5),
    ]
    assert result.latency_s == pytest.approx(9.5)


def test_pipefusion_two_stages_two_patches_one_warmup_step():
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=2,
                        degrees=Degrees(pipefusion=2), patches=2, warmup_steps=1)
    result = simulate(plan, TINY, star_cluster(2, **FREE_COMM), ConstantCost(1.0, 0.25, 0.5), record_trace=True)
    assert timeline(result) == [
        ("d0c0s0", "embed", 0, None, 0.0, 0.25),
        ("d0c0s1", "bubble", 0, None, 0.0, 2.25),
        ("d0c0s0", "compute", 0, None, 0.25, 2.25),
        ("d0c0s0", "bubble", 1, 0, 2.25, 4.75),      # waits for the warm-up latent to come back
        ("d0c0s1", "compute", 0, None, 2.25, 4.25),
        ("d0c0s1", "final", 0, None, 4.25, 4.75),
        ("d0c0s0", "embed", 1, 0, 4.75, 5.0),
        ("d0c0s1", "bubble", 1, 0, 4.75, 7.0),
        ("d0c0s0", "compute", 1, 0, 5.0, 7.0),
        ("d0c0s0", "embed", 1, 1, 7.0, 7.25),
        ("d0c0s1", "compute", 1, 0, 7.0, 9.0),
        ("d0c0s0", "compute", 1, 1, 7.25, 9.25),
        ("d0c0s1", "final", 1, 0, 9.0, 9.5),
        ("d0c0s1", "compute", 1, 1, 9.5, 11.5),
        ("d0c0s1", "final", 1, 1, 11.5, 12.0),
    ]
    b = result.prediction.breakdown_s
    assert b == pytest.approx({"warmup": 4.75, "embed": 0.0, "compute": 4.0, "final": 1.0, "scheduler": 0.0,
                               "overhead": 0.0, "vae": 0.0, "exposed_communication": 0.0, "bubble": 2.25}, abs=1e-9)


def test_patch_m_of_step_t_runs_on_stage_d_at_micro_step_tM_plus_m_plus_d():
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=3,
                        degrees=Degrees(pipefusion=4), patches=4, warmup_steps=0)
    result = simulate(plan, PIXART, star_cluster(4, **FREE_COMM), ConstantCost(1.0), record_trace=True)
    per_stage = 7.0  # 28 blocks / 4 stages, 1 s each
    computes = [e for e in result.events if e.cat == "compute"]
    assert len(computes) == 3 * 4 * 4
    for e in computes:
        assert e.start_s == pytest.approx((e.step * 4 + e.patch + e.stage) * per_stage)


def test_hunyuan_long_skips_are_sent_from_the_source_stage_to_the_mirror_stage():
    hunyuan = load_model("hunyuan-tiny")  # 6 blocks: block i > 3 reads block 5 − i
    plan = ParallelPlan(model="hunyuan-tiny", height_px=256, width_px=256, steps=2,
                        degrees=Degrees(pipefusion=3), patches=2, warmup_steps=1)
    result = simulate(plan, hunyuan, star_cluster(3), ConstantCost(1.0), record_trace=True)
    skips = {(e.stage, dict(e.args)["peer"]) for e in result.events if e.name == "skip"}
    # stages [0,1] [2,3] [4,5]: block 4 reads block 1 (stage 0 → 2), block 5 reads block 0 (stage 0 → 2)
    assert skips == {(0, 2)}
    without = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=2,
                           degrees=Degrees(pipefusion=2), patches=2, warmup_steps=1)
    assert not [e for e in simulate(without, TINY, star_cluster(2), ConstantCost(1.0), record_trace=True).events
                if e.name == "skip"]


def test_cfg_parallel_halves_the_batch_and_exchanges_once_per_item():
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=3, degrees=Degrees(cfg=2))
    result = simulate(plan, TINY, star_cluster(2), ConstantCost(1.0), record_trace=True)
    exchanges = [e for e in result.events if e.name == "cfg-exchange"]
    assert len(exchanges) == 2 * 3  # each of the two groups, every step
    prediction = 256 * 4 * 8 * 2  # tokens × patch area × output channels (noise + σ) × bytes
    assert sum(result.traffic.by_route_class.values()) == 2 * 3 * prediction
