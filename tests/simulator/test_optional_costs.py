"""Scheduler step, pass overheads and VAE decode: exact timelines with a fake cost model that has them."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from profiles.catalog.models import load_model
from simulator.engine import OPTIONAL_COSTS, simulate
from simulator.estimate import estimate_latency_s
from simulator.plan import Degrees, ParallelPlan
from tests.simulator.fakes import FREE_COMM, ConstantCost, star_cluster
from tests.simulator.test_timeline import timeline

TINY = load_model("pixart-tiny")  # 4 blocks, 16×16 tokens, CFG


@dataclass
class WithExtras(ConstantCost):
    """ConstantCost plus every optional cost: scheduler per token, overhead per block, first pass, the image's
    set-up, VAE."""

    scheduler_per_token_s: float = 0.0
    block_overhead_s: float = 0.0
    first_s: float = 0.0
    vae_s: float = 0.0
    setup_s: float = 0.0

    def scheduler_step_time_s(self, image_tokens: int) -> float:
        return self.scheduler_per_token_s * image_tokens

    def pass_overhead_s(self, blocks: int, batch: int) -> float:
        return self.block_overhead_s * blocks

    def first_pass_overhead_s(self, batch: int) -> float:
        return self.first_s

    def vae_decode_time_s(self, height_px: int, width_px: int) -> float:
        return self.vae_s

    def image_setup_time_s(self) -> float:
        return self.setup_s


def extras() -> WithExtras:
    return WithExtras(1.0, 0.25, 0.5, scheduler_per_token_s=1 / 1024, block_overhead_s=0.0625, first_s=0.5,
                      vae_s=2.0)


def test_serial_timeline_with_every_optional_cost():
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=2)
    result = simulate(plan, TINY, star_cluster(1), extras(), record_trace=True)
    assert timeline(result) == [
        ("d0c0s0", "overhead", 0, None, 0.0, 0.5),          # first pass (cold)
        ("d0c0s0", "embed", 0, None, 0.5, 0.75),
        ("d0c0s0", "compute", 0, None, 0.75, 4.75),
        ("d0c0s0", "overhead", 0, None, 4.75, 5.0),         # 4 blocks × 0.0625
        ("d0c0s0", "final", 0, None, 5.0, 5.5),
        ("d0c0s0", "scheduler", 0, None, 5.5, 5.75),        # 256 tokens / 1024
        ("d0c0s0", "embed", 1, None, 5.75, 6.0),
        ("d0c0s0", "compute", 1, None, 6.0, 10.0),
        ("d0c0s0", "overhead", 1, None, 10.0, 10.25),
        ("d0c0s0", "final", 1, None, 10.25, 10.75),
        ("d0c0s0", "scheduler", 1, None, 10.75, 11.0),
        ("d0c0s0", "vae", None, None, 11.0, 13.0),
    ]
    assert result.latency_s == pytest.approx(13.0)
    b = result.prediction.breakdown_s
    assert b == pytest.approx({"warmup": 0.0, "embed": 0.5, "compute": 8.0, "final": 1.0, "scheduler": 0.5,
                               "overhead": 1.0, "vae": 2.0, "exposed_communication": 0.0, "bubble": 0.0}, abs=1e-9)
    assert sum(b.values()) == pytest.approx(result.latency_s)
    assert result.prediction.unpriced == []
    cats = {e.cat for e in result.trace.work()}
    assert {"scheduler", "vae", "overhead"} <= cats
    assert estimate_latency_s(plan, TINY, star_cluster(1), extras()) == pytest.approx(13.0)


def test_pipefusion_scheduler_per_patch_on_the_last_stage_and_vae_at_the_end():
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=2,
                        degrees=Degrees(pipefusion=2), patches=2, warmup_steps=1)
    cost = WithExtras(1.0, 0.25, 0.5, scheduler_per_token_s=1 / 512, vae_s=2.0)
    result = simulate(plan, TINY, star_cluster(2, **FREE_COMM), cost, record_trace=True)
    assert timeline(result) == [
        ("d0c0s0", "embed", 0, None, 0.0, 0.25),
        ("d0c0s1", "bubble", 0, None, 0.0, 2.25),
        ("d0c0s0", "compute", 0, None, 0.25, 2.25),
        ("d0c0s0", "bubble", 1, 0, 2.25, 5.25),
        ("d0c0s1", "compute", 0, None, 2.25, 4.25),
        ("d0c0s1", "final", 0, None, 4.25, 4.75),
        ("d0c0s1", "scheduler", 0, None, 4.75, 5.25),       # the whole latent: 256 tokens / 512
        ("d0c0s0", "embed", 1, 0, 5.25, 5.5),
        ("d0c0s1", "bubble", 1, 0, 5.25, 7.5),
        ("d0c0s0", "compute", 1, 0, 5.5, 7.5),
        ("d0c0s0", "embed", 1, 1, 7.5, 7.75),
        ("d0c0s1", "compute", 1, 0, 7.5, 9.5),
        ("d0c0s0", "compute", 1, 1, 7.75, 9.75),
        ("d0c0s1", "final", 1, 0, 9.5, 10.0),
        ("d0c0s1", "scheduler", 1, 0, 10.0, 10.25),         # one patch: 128 tokens
        ("d0c0s1", "compute", 1, 1, 10.25, 12.25),
        ("d0c0s1", "final", 1, 1, 12.25, 12.75),
        ("d0c0s1", "scheduler", 1, 1, 12.75, 13.0),
        ("d0c0s1", "vae", None, None, 13.0, 15.0),
    ]
    b = result.prediction.breakdown_s
    assert b["vae"] == pytest.approx(2.0) and b["scheduler"] == pytest.approx(0.5)
    assert sum(b.values()) == pytest.approx(result.latency_s)


@dataclass
class WithPatchLoop(WithExtras):
    """WithExtras plus a PipeFusion patch pass overhead of its own (a patch count's measured loop)."""

    patch_overhead_s: float = 0.0

    def patch_pass_overhead_s(self, blocks: int, batch: int, query_tokens: int) -> float:
        return self.patch_overhead_s * blocks + query_tokens / 1024


def test_patch_passes_pay_the_patch_loop_overhead_and_whole_passes_the_serial_one():
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=3,
                        degrees=Degrees(pipefusion=2), patches=2, warmup_steps=1)
    cost = WithPatchLoop(1.0, 0.25, 0.5, block_overhead_s=0.25, patch_overhead_s=0.125)
    result = simulate(plan, TINY, star_cluster(2, **FREE_COMM), cost, record_trace=True)
    overheads = [(actor, step, patch, round(end - start, 9)) for actor, cat, step, patch, start, end in timeline(result)
                 if cat == "overhead"]
    whole, patch = 2 * 0.25, 2 * 0.125 + 128 / 1024  # 2 blocks per stage; a patch is 128 tokens
    assert sorted(overheads) == sorted([(f"d0c0s{s}", 0, None, whole) for s in (0, 1)]
                                       + [(f"d0c0s{s}", t, m, patch) for s in (0, 1) for t in (1, 2) for m in (0, 1)])
    assert estimate_latency_s(plan, TINY, star_cluster(2, **FREE_COMM), cost) == pytest.approx(result.latency_s)
    without = simulate(plan, TINY, star_cluster(2, **FREE_COMM), WithExtras(1.0, 0.25, 0.5, block_overhead_s=0.25))
    assert result.latency_s < without.latency_s  # the serial figure, charged per patch pass, costs more here


def test_cfg_parallel_decodes_once_on_the_first_cfg_group():
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=1, degrees=Degrees(cfg=2))
    result = simulate(plan, TINY, star_cluster(2, **FREE_COMM), WithExtras(1.0, vae_s=2.0), record_trace=True)
    vae = [e for e in result.events if e.cat == "vae"]
    assert [e.actor for e in vae] == ["d0c0s0"]
    assert result.latency_s == pytest.approx(4.0 + 2.0)


def test_a_cost_model_without_the_methods_prices_zero_and_says_so():
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=2)
    result = simulate(plan, TINY, star_cluster(1), ConstantCost(1.0, 0.25, 0.5))
    assert result.latency_s == pytest.approx(9.5)
    assert result.prediction.unpriced == sorted(OPTIONAL_COSTS)
    assert result.prediction.breakdown_s["vae"] == 0.0


@pytest.mark.parametrize("spec", [{}, {"pipefusion": 2}, {"cfg": 2}, {"ulysses": 2}])
def test_every_rank_sets_its_image_up_once_and_at_once_before_its_first_input(spec):
    """The runtime's ranks draw their latents together after the start barrier, so the set-up adds
    its time once to the latency, whatever the plan, and a downstream stage sets up while it would wait."""
    patches = 2 if "pipefusion" in spec else 1
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=3, degrees=Degrees(**spec),
                        patches=patches, warmup_steps=1)
    cluster = star_cluster(2, **FREE_COMM)
    base = simulate(plan, TINY, cluster, extras())
    setup = replace(extras(), setup_s=0.75)
    result = simulate(plan, TINY, cluster, setup, record_trace=True)
    assert result.latency_s == pytest.approx(base.latency_s + 0.75)
    starts = [(e.actor, e.start_s) for e in result.events if e.name == "image set-up"]
    # one set-up per stage group (a group's ranks do the same thing), all at the start
    assert sorted(a for a, _ in starts) == sorted({e.actor for e in result.events})
    assert all(start == 0.0 for _, start in starts)
    assert estimate_latency_s(plan, TINY, cluster, setup) == pytest.approx(
        estimate_latency_s(plan, TINY, cluster, extras()) + 0.75)
