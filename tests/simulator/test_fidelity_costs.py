"""Costs issue 13 added: Ring's per-hop merges, measured gloo collectives, the real presets' VAE and scheduler."""

from __future__ import annotations

import simpy

from planner.commands_simulate import link_fits_from
from profiles.catalog.models import load_model
from profiles.costs.analytic import AnalyticCostModel
from profiles.costs.selection import cost_model_for
from profiles.topology.graph import load_cluster
from simulator import collectives
from simulator.engine import simulate
from simulator.network import NETWORK_MODELS
from simulator.plan import plan_from_spec
from simulator.strategies import STRATEGIES
from simulator.strategies.base import PassWork


def test_ring_pays_a_merge_per_hop_that_grows_with_the_degree():
    model = load_model("pixart-alpha")
    cost = AnalyticCostModel.for_gpu(model, "a100-sxm")
    ring = STRATEGIES.get("ring")
    work = PassWork(4096, 4096, 2, 28, 1152, 2, False, 0)
    price = lambda method, *args: getattr(cost, method)(*args)  # noqa: E731
    assert ring.extra_compute_s(work, 1, 4096, price) == 0
    two, four = ring.extra_compute_s(work, 2, 2048, price), ring.extra_compute_s(work, 4, 1024, price)
    assert 0 < two < four
    assert STRATEGIES.get("ulysses").extra_compute_s(work, 4, 1024, price) == 0


def test_measured_gloo_collectives_replace_the_point_to_point_decomposition():
    cluster = load_cluster("cpu2")
    fits = link_fits_from("cpu2-links")
    assert fits["PHB"].collectives and {c.op for c in fits["PHB"].collectives} == {"all_gather", "all_reduce",
                                                                                     "all_to_all"}
    env = simpy.Environment()
    net = NETWORK_MODELS["fair"](env, cluster, link_fits=fits)
    env.process(collectives.all_gather(net, cluster.devices, 4096))
    env.run()
    curve = net.collective_curve("all_gather", cluster.devices)
    # gloo's back-to-back ≈ 0.15-0.35 ms, not one 46 µs hop, plus the in-loop extra per call (`--in-loop`)
    assert env.now == curve.time_s(4096) + curve.extra_s and env.now > 1e-4
    sizes = [2 ** k for k in range(8, 26)]
    times = [curve.time_s(b) for b in sizes]
    assert times == sorted(times) and curve.time_s(2 ** 24, 2.0) < curve.time_s(2 ** 24)


def test_cfg_swap_is_the_measured_all_gather_the_runtime_calls_and_sends_without_a_curve():
    cluster = load_cluster("cpu2")
    pair = [tuple(cluster.devices)]
    measured = NETWORK_MODELS["fair"](simpy.Environment(), cluster, link_fits=link_fits_from("cpu2-links"))
    measured.env.process(collectives.cfg_swap(measured, pair, 16384))
    measured.env.run()
    curve = measured.collective_curve("all_gather", pair[0])
    assert measured.env.now == curve.time_s(16384) + curve.extra_s
    assert collectives.cfg_swap_s(measured, pair[0], 16384) == measured.env.now
    plain = NETWORK_MODELS["fair"](simpy.Environment(), cluster)
    plain.env.process(collectives.cfg_swap(plain, pair, 16384))
    plain.env.run()
    assert collectives.cfg_swap_s(plain, pair[0], 16384) is None
    assert 0 < plain.env.now < measured.env.now  # one round of sends: no call set-up, no synchronisation


def test_real_presets_price_vae_and_scheduler():
    model, cluster = load_model("pixart-alpha"), load_cluster("a100-pcie4")
    plan = plan_from_spec("pixart-alpha", "", height_px=1024, width_px=1024, steps=20)
    p = simulate(plan, model, cluster, cost_model_for(model, "a100-pcie", None)).prediction
    assert p.breakdown_s["vae"] > 0 and p.breakdown_s["scheduler"] > 0
    assert p.unpriced == ["first_pass_overhead_s", "image_setup_time_s"]
