"""Cluster scale: graphs in linear time, a summary for 1,000 GPUs, impossible sizes refused in one line."""

from __future__ import annotations

import json
import time
from itertools import combinations

import pytest
from planner.placement import _worst_class, grouped_devices, nearest_subset
from profiles.topology.graph import ClusterGraph, load_cluster

L40 = """schema_version: 1
name: l40-{n}node
description: copies of pcie8
network: {{bandwidth_gb_s: 25, latency_us: 3.0}}
nodes:
  - name: node
    count: {n}
    gpu: l40
    device_link: {{bandwidth_gb_s: 22, latency_us: 1.0}}
    socket_link: {{bandwidth_gb_s: 20, latency_us: 2.0}}
    sockets:
      - name: cpu0
        switches:
          - {{name: sw0, uplink: {{bandwidth_gb_s: 22, latency_us: 1.0}}, gpus: [gpu0, gpu1], nics: [nic0]}}
          - {{name: sw1, uplink: {{bandwidth_gb_s: 22, latency_us: 1.0}}, gpus: [gpu2, gpu3]}}
      - name: cpu1
        switches:
          - {{name: sw2, uplink: {{bandwidth_gb_s: 22, latency_us: 1.0}}, gpus: [gpu4, gpu5], nics: [nic1]}}
          - {{name: sw3, uplink: {{bandwidth_gb_s: 22, latency_us: 1.0}}, gpus: [gpu6, gpu7]}}
"""


def _copies(nodes: int) -> ClusterGraph:
    topology = load_cluster("l40-2node").topology
    return ClusterGraph(topology.model_copy(update={"nodes": [topology.nodes[0].model_copy(update={"count": nodes})]}))


def test_graph_build_grows_linearly_with_nodes():
    def build(nodes: int) -> float:
        start = time.process_time()
        _copies(nodes)
        return time.process_time() - start
    small, large = min(build(16) for _ in range(3)), min(build(128) for _ in range(3))
    assert large < 8 * small * 2.5 + 0.05  # 8× the nodes: about 8× the time, far from the 64× of a quadratic build


def test_topology_show_on_1000_gpus_is_a_summary_per_node_class(tmp_path, pfplan):
    path = tmp_path / "big.yaml"
    path.write_text(L40.format(n=125))
    result = pfplan("topology", "show", path)
    assert result.code == 0, result.err
    assert "1,000 devices on 125 hosts" in result.out and "125 hosts × 8 l40" in result.out
    assert len(result.out.splitlines()) < 40
    pairs = 1000 * 999 // 2
    data = json.loads(pfplan("topology", "show", path, "--json").out)
    assert sum(v["pairs"] for v in data["route_classes"].values()) == pairs
    assert data["route_classes"]["NET"]["pairs"] == pairs - 125 * 28


def test_the_summary_counts_every_pair_as_the_matrix_does():
    from planner.topology_summary import summary

    cluster = _copies(3)
    counts: dict[str, int] = {}
    for a, b in combinations(cluster.devices, 2):
        cls = cluster.route(a, b).route_class
        counts[cls] = counts.get(cls, 0) + 1
    assert {k: v["pairs"] for k, v in summary(cluster)["route_classes"].items()} == counts


@pytest.mark.parametrize("count, expect", [(100_000_000_000, "less than or equal to 65536"),
                                           (9000, "pfplan handles at most 65,536")])
def test_a_topology_too_large_to_be_real_is_one_line_exit_2(tmp_path, pfplan, count, expect):
    path = tmp_path / "huge.yaml"
    path.write_text(L40.format(n=count))
    start = time.perf_counter()
    result = pfplan("topology", "show", path)
    assert result.code == 2 and expect in result.err and not result.out
    assert len(result.err.strip().splitlines()) == 1
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("args, expect", [(["--steps", "1000000000"], "--steps: 1,000,000,000 steps"),
                                          (["--resolution", "100000"], "100,000 px is beyond")])
def test_search_refuses_impossible_sizes_before_any_work(pfplan, args, expect):
    base = ["search", "--topology", "pcie8", "--model", "pixart-alpha", "--resolution", "1024", "--steps", "20"]
    for i in range(0, len(args), 2):
        base[base.index(args[i]) + 1] = args[i + 1]
    start = time.perf_counter()
    result = pfplan(*base)
    assert result.code == 2 and expect in result.err and len(result.err.strip().splitlines()) == 1
    assert time.perf_counter() - start < 5


def test_the_window_scan_finds_the_pairwise_nearest_window():
    cluster = _copies(3)
    ordered = grouped_devices(cluster)

    def pairwise(devices):
        from planner.placement import CLASS_ORDER
        return max((CLASS_ORDER[cluster.route(a, b).route_class] for a in devices for b in devices if a != b),
                   default=0)
    for count in (1, 2, 3, 4, 5, 8, 9, 16, 20):
        windows = [ordered[i:i + count] for i in range(len(ordered) - count + 1)]
        want = min(windows, key=lambda w: (pairwise(w), ordered.index(w[0])))
        assert nearest_subset(cluster, ordered, count) == want
        assert all(_worst_class(cluster, w) == pairwise(w) for w in windows[:12])


def test_identical_hosts_give_routes_with_identical_figures():
    cluster = _copies(4)
    seen: dict[tuple, tuple] = {}
    for a in cluster.devices[::3]:
        for b in cluster.devices[1::5]:
            if a == b:
                continue
            r = cluster.route(a, b)
            key = cluster.placement_class([a, b])
            figures = (r.route_class, r.bottleneck_gb_s, r.latency_us, len(r.links))
            assert seen.setdefault(key, figures) == figures


def test_routes_between_identical_hosts_are_the_direct_graph_search():
    cluster = _copies(4)
    for a in cluster.devices:
        for b in cluster.devices:
            assert cluster.route(a, b) == cluster._compute_route(a, b), (a, b)
