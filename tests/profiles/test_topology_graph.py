"""Route classes, bottlenecks and shared links of the shipped topologies."""

from __future__ import annotations

import pytest

from profiles.topology.format import shipped_topologies
from profiles.topology.graph import load_cluster


@pytest.mark.parametrize("name", shipped_topologies())
def test_every_shipped_topology_loads_and_routes_every_pair(name):
    cluster = load_cluster(name)
    for a in cluster.devices:
        for b in cluster.devices:
            route = cluster.route(a, b)
            assert (route.route_class == "X") == (a == b)
            if a != b:
                assert route.bottleneck_gb_s > 0 and route.latency_us > 0
                assert route.nodes[0] == a and route.nodes[-1] == b


@pytest.mark.parametrize("name, a, b, expected", [
    ("pcie8", "node0/gpu0", "node0/gpu1", "PIX"),
    ("pcie8", "node0/gpu0", "node0/gpu2", "PHB"),
    ("pcie8", "node0/gpu1", "node0/gpu6", "SYS"),
    ("l20x8", "node0/gpu6", "node0/gpu7", "PIX"),
    ("l20x8", "node0/gpu3", "node0/gpu4", "SYS"),
    ("a100-pcie4", "node0/gpu0", "node0/gpu1", "PIX"),
    ("a100-pcie4", "node0/gpu1", "node0/gpu2", "PHB"),
    ("a100-nvlink8", "node0/gpu0", "node0/gpu7", "NVL"),
    ("h100-nvlink8", "node0/gpu2", "node0/gpu5", "NVL"),
    ("l40-2node", "node0/gpu0", "node0/gpu1", "PIX"),
    ("l40-2node", "node0/gpu0", "node0/gpu5", "SYS"),
    ("l40-2node", "node0/gpu0", "node1/gpu0", "NET"),
    ("t4x4", "node0/gpu0", "node0/gpu3", "PHB"),
    ("cpu2", "node0/rank0", "node0/rank1", "PHB"),
])
def test_route_classes(name, a, b, expected):
    assert load_cluster(name).route(a, b).route_class == expected


def test_two_gpus_behind_one_switch_share_its_uplink():
    cluster = load_cluster("pcie8")
    shared = cluster.shared_links([("node0/gpu0", "node0/gpu2"), ("node0/gpu1", "node0/gpu3")])
    assert ("node0/sw0", "node0/cpu0") in shared
    assert len(shared[("node0/sw0", "node0/cpu0")]) == 2


def test_opposite_directions_and_nvlink_pairs_do_not_share():
    pcie = load_cluster("pcie8")
    assert pcie.shared_links([("node0/gpu0", "node0/gpu2"), ("node0/gpu2", "node0/gpu0")]) == {}
    nvl = load_cluster("h100-nvlink8")
    assert nvl.shared_links([("node0/gpu0", "node0/gpu1"), ("node0/gpu2", "node0/gpu3")]) == {}


def test_bottleneck_and_latency_add_up_along_the_route():
    cluster = load_cluster("pcie8")
    route = cluster.route("node0/gpu0", "node0/gpu4")
    # gpu→sw0→cpu0→cpu1→sw2→gpu: four 1 µs PCIe hops and a 2 µs socket link at 20 GB/s.
    assert route.latency_us == pytest.approx(6.0)
    assert route.bottleneck_gb_s == pytest.approx(20.0)
    assert route.transfer_time_s(20e9) == pytest.approx(1.0 + 6e-6)


def test_cross_node_route_goes_through_a_nic_and_the_fabric():
    route = load_cluster("l40-2node").route("node0/gpu2", "node1/gpu2")
    assert "fabric" in route.nodes
    assert any(n.endswith("nic0") for n in route.nodes)


def test_devices_are_listed_in_numeric_order_whatever_the_file_order():
    from profiles.topology.format import Topology
    from profiles.topology.graph import ClusterGraph

    link = {"bandwidth_gb_s": 22, "latency_us": 1.0}
    gpus_on_switch = [f"gpu{i}" for i in range(3, 11)]
    topology = Topology.model_validate({"name": "t", "nodes": [{
        "name": "node0", "gpu": "l40", "device_link": link, "sockets": [
            {"name": "cpu0", "gpus": ["gpu2", "gpu1", "gpu0"],
             "switches": [{"name": "sw0", "uplink": link, "gpus": gpus_on_switch}]}]}]})
    devices = ClusterGraph(topology).devices
    assert devices == [f"node0/gpu{i}" for i in range(11)]
