"""The search's lower bound (compute plus the collectives a pass cannot overlap, at the cluster's
fastest routes) stays below the estimate it prunes by and below the simulated latency, under
every placement alternative; and it prunes more than the compute-only bound did."""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from planner.search import prepare
from planner.space import SpaceOptions, plan_shapes
from profiles.catalog.models import load_model
from profiles.costs.selection import cost_model_for, dtype_bytes_of
from profiles.topology.graph import load_cluster
from simulator.engine import simulate
from simulator.estimate import compute_bound_s, estimate_latency_s, route_floor

TOPOLOGIES = ["pcie8", "l40-2node", "h100-nvlink8", "a100-pcie4", "t4x4"]
MODELS = ["pixart-alpha", "flux-dev", "sd3-medium", "hunyuan-dit"]


@lru_cache(maxsize=None)
def _job(topology: str, model_name: str, px: int, steps: int):
    model, cluster = load_model(model_name), load_cluster(topology)
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    shapes = list(plan_shapes(model, SpaceOptions(px, px, steps, len(cluster.devices))))
    return model, cluster, cost, shapes, route_floor(cluster)


def _bound(plan, model, cluster, cost, floor) -> float:
    return compute_bound_s(plan, model, cost, dtype_bytes=dtype_bytes_of(cost), routes=floor,
                           overlap_efficiency=cluster.topology.communication.overlap_efficiency)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topology=st.sampled_from(TOPOLOGIES), model_name=st.sampled_from(MODELS), px=st.sampled_from([512, 1024]),
       steps=st.sampled_from([2, 5]), index=st.integers(0, 10 ** 6), which=st.integers(0, 3))
def test_the_bound_is_below_the_estimate_and_the_simulation(topology, model_name, px, steps, index, which):
    model, cluster, cost, shapes, floor = _job(topology, model_name, px, steps)
    variants = prepare(shapes[index % len(shapes)], model, cluster, cost)
    plan, _ = variants[which % len(variants)]
    bound = _bound(plan, model, cluster, cost, floor)
    dtype = dtype_bytes_of(cost)
    assert bound * (1 - 1e-9) <= estimate_latency_s(plan, model, cluster, cost, dtype_bytes=dtype)
    result = simulate(plan, model, cluster, cost, dtype_bytes=dtype)
    # the simulator moves whole bytes (``int``) per transfer and the bound exact fractions, so the run may
    # beat it by at most a byte per transfer (seen: data2×distrifusion3 on h100-nvlink8, 2e-11 s below);
    # priced here at a tenth of the slowest link's data-sheet rate, far under any real miss
    slowest = min(d["bandwidth_gb_s"] for _, _, d in cluster.graph.edges(data=True)) * 1e9 * 0.1
    assert bound * (1 - 1e-9) - result.traffic.transfers / slowest <= result.latency_s
    assert bound >= compute_bound_s(plan, model, cost, dtype_bytes=dtype)


@pytest.mark.parametrize("topology, model_name", [("l40-2node", "flux-dev"), ("pcie8", "pixart-alpha")])
def test_the_bound_is_below_every_shapes_estimate(topology, model_name):
    model, cluster, cost, shapes, floor = _job(topology, model_name, 1024, 20)
    dtype = dtype_bytes_of(cost)
    tighter = 0
    for shape in shapes[::5]:
        plan, _ = prepare(shape, model, cluster, cost)[0]
        bound = _bound(plan, model, cluster, cost, floor)
        assert bound * (1 - 1e-9) <= estimate_latency_s(plan, model, cluster, cost, dtype_bytes=dtype)
        tighter += bound > compute_bound_s(plan, model, cost, dtype_bytes=dtype) * (1 + 1e-6)
    assert tighter > 10  # the collectives count: sequence- and tensor-parallel shapes are priced higher


def test_the_route_floor_of_two_nodes_knows_the_cross_host_route():
    cluster = load_cluster("l40-2node")
    floor = route_floor(cluster)
    assert floor.host_devices == 8 and floor.cross_host is not None
    assert floor.cross_host[1] <= floor.any_route[1] and floor.cross_host[0] >= floor.any_route[0]
    assert floor.figures(16) == floor.cross_host and floor.figures(8) == floor.any_route
