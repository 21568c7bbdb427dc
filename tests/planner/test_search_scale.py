"""The fast search (bound pruning, replica shapes, memoised estimates) answers as the exhaustive one does."""

from __future__ import annotations

import pytest

from planner.search import SearchSettings, search
from planner.space import SpaceOptions, plan_shapes, replica_shapes, with_replicas
from profiles.catalog.models import load_model
from profiles.costs.selection import cost_model_for, dtype_bytes_of
from profiles.topology.graph import load_cluster
from simulator.estimate import compute_bound_s, estimate_latency_s


def _top(result, n=5):
    return [(c.plan.degrees.label(), c.plan.patches, c.plan.stage_split, c.plan.placement, c.latency_s,
             c.simulated) for c in result.ranked[:n]]


@pytest.mark.parametrize("topology, model_name, px, steps", [("pcie8", "pixart-alpha", 2048, 20),
                                                              ("l40-2node", "flux-dev", 1024, 28)])
def test_fast_search_top5_is_the_exhaustive_searchs(topology, model_name, px, steps):
    model, cluster = load_model(model_name), load_cluster(topology)
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    quick = dict(simulate_top=5, placement_top=2)
    fast = search(model, cluster, cost, height_px=px, width_px=px, steps=steps, settings=SearchSettings(**quick))
    full = search(model, cluster, cost, height_px=px, width_px=px, steps=steps,
                  settings=SearchSettings(exhaustive=True, **quick))
    assert _top(fast) == _top(full)
    assert fast.counts["shapes"] == full.counts["shapes"]
    assert fast.counts["pruned_by_bound"] > 0 and full.counts["pruned_by_bound"] == 0


@pytest.mark.parametrize("model_name, px", [("flux-dev", 4096), ("pixart-alpha", 2048), ("hunyuan-dit", 1024)])
def test_replica_shapes_are_the_shapes_in_their_order(model_name, px):
    model = load_model(model_name)
    options = SpaceOptions(px, px, 20, 12, min_devices=2)
    every = [p.model_dump() for p in plan_shapes(model, options)]
    bases = list(plan_shapes(model, options, replicas=False))
    rebuilt = [with_replicas(b, d).model_dump() for _, b, d in sorted(replica_shapes(bases, options),
                                                                       key=lambda row: row[0])]
    assert rebuilt == every


def test_the_compute_bound_never_exceeds_the_estimate():
    from planner.search import prepare

    model, cluster = load_model("pixart-alpha"), load_cluster("l40-2node")
    cost = cost_model_for(model, "l40")
    dtype = dtype_bytes_of(cost)
    shapes = list(plan_shapes(model, SpaceOptions(1024, 1024, 20, 16)))
    checked = 0
    for shape in shapes[::7]:
        plan, _ = prepare(shape, model, cluster, cost)[0]
        bound = compute_bound_s(plan, model, cost, dtype_bytes=dtype)
        assert bound * (1 - 1e-9) <= estimate_latency_s(plan, model, cluster, cost, dtype_bytes=dtype)
        checked += 1
    assert checked > 50
