"""Where a closed form exists, the simulation matches it within 1%."""

from __future__ import annotations

import pytest

from profiles.costs.analytic import AnalyticCostModel
from profiles.costs.cost_model import EMBED, FINAL, LayerShape
from profiles.catalog.models import load_model
from profiles.topology.graph import load_cluster
from simulator.engine import simulate
from simulator.estimate import estimate_latency_s
from simulator.plan import Degrees, ParallelPlan
from tests.simulator.fakes import FREE_COMM, ConstantCost, star_cluster

PIXART = load_model("pixart-alpha")


def plan(steps=20, **kw) -> ParallelPlan:
    return ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=steps, **kw)


def serial_step_s(cost, model, tokens, batch=2):
    blocks = sum(cost.layer_time_s(LayerShape(kind, tokens, tokens, batch)) for kind in model.arch.block_kinds())
    return cost.layer_time_s(LayerShape(EMBED, tokens, tokens, batch)) + blocks \
        + cost.layer_time_s(LayerShape(FINAL, tokens, tokens, batch))


@pytest.mark.parametrize("model_name,steps", [("pixart-alpha", 20), ("flux-dev", 28), ("hunyuan-dit", 7)])
def test_serial_is_steps_times_the_per_step_cost(model_name, steps):
    model = load_model(model_name)
    cost = AnalyticCostModel.for_gpu(model, "a100-pcie")
    p = ParallelPlan(model=model_name, height_px=1024, width_px=1024, steps=steps)
    tokens = model.image_tokens(1024, 1024)
    batch = 2 if model.uses_cfg else 1
    # each step: the blocks plus the scheduler on the whole latent; once: the VAE decode (analytic since issue 13)
    expected = steps * (serial_step_s(cost, model, tokens, batch) + cost.scheduler_step_time_s(tokens)) \
        + cost.vae_decode_time_s(1024, 1024)
    assert simulate(p, model, load_cluster("a100-pcie4"), cost).latency_s == pytest.approx(expected, rel=0.01)
    assert estimate_latency_s(p, model, load_cluster("a100-pcie4"), cost) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("n,m,w,t", [(4, 4, 1, 20), (4, 8, 1, 20), (4, 16, 2, 10), (7, 8, 1, 5), (2, 2, 0, 3)])
def test_pipefusion_with_free_comm_and_m_ge_n_is_warmup_plus_steady_state_plus_one_fill(n, m, w, t):
    cost = ConstantCost(1.0)
    p = plan(steps=t, degrees=Degrees(pipefusion=n), patches=m, warmup_steps=w)
    stage = 28 / n
    expected = w * n * stage + (t - w) * m * stage + (n - 1) * stage
    got = simulate(p, PIXART, star_cluster(n, **FREE_COMM), cost).latency_s
    assert got == pytest.approx(expected, rel=0.01)
    assert estimate_latency_s(p, PIXART, star_cluster(n, **FREE_COMM), cost) == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("n,m", [(4, 2), (7, 4), (4, 1)])
def test_pipefusion_with_fewer_patches_than_stages_leaves_a_bubble_every_step(n, m):
    cost = ConstantCost(1.0)
    t, w = 6, 1
    p = plan(steps=t, degrees=Degrees(pipefusion=n), patches=m, warmup_steps=w)
    stage = 28 / n
    expected = w * n * stage + ((t - w) * n + m - 1) * stage  # each step waits for patch 0's round trip
    result = simulate(p, PIXART, star_cluster(n, **FREE_COMM), cost)
    assert result.latency_s == pytest.approx(expected, rel=0.01)
    assert result.prediction.breakdown_s["bubble"] > 0


def test_pipefusion_with_warmup_equal_to_steps_is_a_synchronous_pipeline():
    """W = T: every step is a full-image pass through the stages in turn, no staleness benefit."""
    cost = AnalyticCostModel.for_gpu(PIXART, "a100-pcie")
    cluster = load_cluster("a100-pcie4")
    serial = simulate(plan(), PIXART, cluster, cost).latency_s
    sync = simulate(plan(degrees=Degrees(pipefusion=4), patches=8, warmup_steps=20), PIXART, cluster, cost)
    free = simulate(plan(degrees=Degrees(pipefusion=4), patches=8, warmup_steps=20), PIXART,
                    star_cluster(4, **FREE_COMM), cost).latency_s
    pipelined = simulate(plan(degrees=Degrees(pipefusion=4), patches=8, warmup_steps=1), PIXART, cluster, cost)
    assert free == pytest.approx(serial, rel=1e-6)  # same work in the same order, nothing overlaps
    assert sync.latency_s > serial  # plus the stage-to-stage sends
    assert sync.prediction.breakdown_s["warmup"] == pytest.approx(sync.latency_s)
    assert pipelined.latency_s < serial / 2


def test_pipefusion_bytes_are_patch_activations_between_stages_plus_latents_back():
    n, m, w, t = 4, 8, 1, 5
    p = plan(steps=t, degrees=Degrees(pipefusion=n), patches=m, warmup_steps=w)
    result = simulate(p, PIXART, load_cluster("a100-pcie4"), ConstantCost(1e-3))
    s, h, batch, dtype = 4096, 1152, 2, 2
    latent = s * 4 * 4 * dtype  # the updated latent: tokens × patch area (2×2) × 4 latent channels
    per_step = (n - 1) * s * h * batch * dtype + latent  # patches add up to the image
    assert sum(result.prediction.bytes_by_route_class.values()) == t * per_step


def test_estimate_is_close_to_the_simulation_for_pipefusion_on_pcie():
    cost = AnalyticCostModel.for_gpu(PIXART, "a100-pcie")
    p = plan(degrees=Degrees(pipefusion=4), patches=8, warmup_steps=1)
    cluster = load_cluster("a100-pcie4")
    assert estimate_latency_s(p, PIXART, cluster, cost) == pytest.approx(simulate(p, PIXART, cluster, cost).latency_s,
                                                                         rel=0.1)


@pytest.mark.parametrize("split", [[10, 6, 6, 6], [4, 8, 8, 8], [7, 7, 7, 7]])
def test_uneven_stage_split_runs_at_the_pace_of_the_slowest_stage(split):
    """K patches through a flow line: one pass through every stage, then one slowest stage per patch."""
    t, w, m = 6, 1, 8
    p = plan(steps=t, degrees=Degrees(pipefusion=4), patches=m, warmup_steps=w, stage_split=split)
    k = (t - w) * m
    expected = w * 28 + 28 + (k - 1) * max(split)
    assert simulate(p, PIXART, star_cluster(4, **FREE_COMM), ConstantCost(1.0)).latency_s == pytest.approx(expected,
                                                                                                           rel=0.01)
