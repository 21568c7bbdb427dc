"""Boxes nobody calibrated get per-route-class priors from public NCCL runs, and say so."""

from __future__ import annotations

from pathlib import Path

import simpy
import yaml

from profiles.topology.format import load_topology
from profiles.topology.graph import ROUTE_CLASSES, load_cluster
from profiles.topology.priors import PRIORS, is_calibrated, prior_communication
from simulator.network import NETWORK_MODELS

SAMPLES = Path(__file__).parent / "topo_samples"


def test_every_route_class_has_a_sourced_prior_below_one():
    assert set(PRIORS) == set(ROUTE_CLASSES)
    for cls, prior in PRIORS.items():
        assert 0 < prior.bandwidth_efficiency < 1 and 0 < prior.overlap_efficiency < 1, cls
        assert "github.com/NVIDIA/" in prior.bandwidth_source and prior.overlap_source, cls


def test_shipped_uncalibrated_boxes_carry_the_priors_of_their_route_classes():
    for name in ("t4x4", "h100-nvlink8", "a100-nvlink8", "l40-2node"):
        cluster = load_cluster(name)
        comm = cluster.topology.communication
        assert comm.prior and not is_calibrated(comm)
        assert comm == prior_communication(set(cluster.route_class_counts)), name
    assert is_calibrated(load_cluster("a100-pcie4").topology.communication)


def test_the_network_prices_each_route_at_its_class_prior():
    cluster = load_cluster("l40-2node")
    net = NETWORK_MODELS["fair"](simpy.Environment(), cluster)
    a, b = cluster.devices[0], cluster.devices[1]
    far = cluster.devices[-1]
    near, remote = cluster.route(a, b), cluster.route(a, far)
    assert net.route_bytes_per_s(near) == near.bottleneck_gb_s * 1e9 * PRIORS[near.route_class].bandwidth_efficiency
    assert net.route_bytes_per_s(remote) == remote.bottleneck_gb_s * 1e9 * PRIORS[remote.route_class].bandwidth_efficiency


def test_import_writes_priors_and_says_so(pfplan, tmp_path):
    out = tmp_path / "dgx.yaml"
    r = pfplan("topology", "import", SAMPLES / "dgx-a100.txt", "--gpu", "a100-sxm", "-o", out)
    assert r.code == 0, r.err
    assert "PRIORS" in r.out
    data = yaml.safe_load(out.read_text())
    assert data["communication"]["prior"] is True
    assert load_topology(out).communication.bandwidth_by_route_class
    shown = pfplan("topology", "show", out)
    assert shown.code == 0 and "PRIORS (not calibrated on this box)" in shown.out and "nccl-tests" in shown.out
