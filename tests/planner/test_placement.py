"""Placement alternatives: chatty groups on near devices, CFG outermost, all distinct and valid."""

from __future__ import annotations

from planner.placement import alternatives, grouped_devices, nearest_subset
from profiles.catalog.models import load_model
from profiles.topology.graph import load_cluster
from simulator.plan import Degrees, ParallelPlan, violations


def plan_of(degrees: Degrees, patches: int = 8) -> ParallelPlan:
    return ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=20, degrees=degrees,
                        patches=patches if degrees.pipefusion > 1 else 1)


def test_greedy_puts_ulysses_pairs_on_one_switch_and_pipeline_across():
    cluster, model = load_cluster("pcie8"), load_model("pixart-alpha")
    plan = plan_of(Degrees(pipefusion=2, ulysses=2))
    greedy = alternatives(plan, model, cluster)[0]
    assert greedy.name == "greedy"
    ranks = greedy.devices
    # ranks (pipe, uly): 0=(0,0) 1=(0,1) 2=(1,0) 3=(1,1); Ulysses groups [0,1] and [2,3]
    assert cluster.route(ranks[0], ranks[1]).route_class == "PIX"
    assert cluster.route(ranks[2], ranks[3]).route_class == "PIX"


def test_cfg_is_outermost_in_the_greedy_placement():
    cluster, model = load_cluster("pcie8"), load_model("pixart-alpha")
    plan = plan_of(Degrees(cfg=2, pipefusion=4))
    ranks = alternatives(plan, model, cluster)[0].devices
    # pipeline groups [0..3] and [4..7] each stay inside one socket; the CFG pairs cross sockets.
    for a, b in ((0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7)):
        assert cluster.route(ranks[a], ranks[b]).route_class in ("PIX", "PHB")
    assert cluster.route(ranks[0], ranks[4]).route_class == "SYS"


def test_alternatives_are_distinct_valid_permutations():
    cluster, model = load_cluster("l40-2node"), load_model("pixart-alpha")
    for degrees in (Degrees(cfg=2, pipefusion=4), Degrees(pipefusion=2, ulysses=2, ring=2), Degrees(data=2, ulysses=8)):
        plan = plan_of(degrees)
        found = alternatives(plan, model, cluster)
        assert len({p.devices for p in found}) == len(found) >= 1
        for p in found:
            assert len(set(p.devices)) == degrees.world_size()
            assert violations(plan.model_copy(update={"placement": list(p.devices)}), model, cluster) == []


def test_subset_of_devices_stays_close():
    cluster = load_cluster("pcie8")
    ordered = grouped_devices(cluster)
    assert [d.split("/")[1] for d in nearest_subset(cluster, ordered, 2)] == ["gpu0", "gpu1"]
    four = nearest_subset(cluster, ordered, 4)
    assert all(cluster.route(a, b).route_class != "SYS" for a in four for b in four if a != b)
    two_nodes = load_cluster("l40-2node")
    eight = nearest_subset(two_nodes, grouped_devices(two_nodes), 8)
    assert len({two_nodes.device_host[d] for d in eight}) == 1


def test_one_alternative_per_placement_class_and_a_class_simulates_alike():
    """The search simulates one placement per class; that holds only if two device lists of one class
    (the same local devices on hosts renamed) give the same simulation, which this checks."""
    from benchmarks.search_scaling import copies
    from profiles.costs.selection import cost_model_for
    from simulator.engine import simulate

    from planner.placement import _place
    from simulator.rank_groups import AXES

    big, flux = copies(16), load_model("flux-dev")  # 20 of 128 GPUs: greedy picks hosts other than the first
    shape = ParallelPlan(model="flux-dev", height_px=4096, width_px=4096, steps=28,
                         degrees=Degrees(pipefusion=5, ulysses=4), patches=5, warmup_steps=1)
    found = alternatives(shape, flux, big)
    topology = _place(shape.degrees, big.devices[:20], tuple(AXES))  # the `topology` alternative's devices
    greedy = found[0].devices
    assert topology != greedy and big.placement_class(topology) == big.placement_class(greedy)
    assert [p.name for p in found] == ["greedy", "reversed"]  # `topology` is greedy's class: dropped

    cluster, model = copies(4), load_model("pixart-alpha")
    plan = plan_of(Degrees(pipefusion=2, ulysses=8), patches=2)
    hosts = cluster.hosts()
    by_host = {h: [d for d in cluster.devices if cluster.device_host[d] == h] for h in hosts}
    first = by_host[hosts[0]] + by_host[hosts[1]]
    renamed = by_host[hosts[3]] + by_host[hosts[1]]  # hosts 0, 1 → 3, 1: the same class
    assert cluster.placement_class(first) == cluster.placement_class(renamed)
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    a, b = (simulate(plan.model_copy(update={"placement": devices}), model, cluster, cost)
            for devices in (first, renamed))
    assert a.latency_s == b.latency_s
    assert a.prediction.breakdown_s == b.prediction.breakdown_s
    assert a.prediction.bytes_by_route_class == b.prediction.bytes_by_route_class
    for mine, theirs in zip(first, renamed):  # device for device under the renaming
        assert a.utilisation[mine] == b.utilisation[theirs]
        assert a.prediction.peak_memory_bytes[mine] == b.prediction.peak_memory_bytes[theirs]
