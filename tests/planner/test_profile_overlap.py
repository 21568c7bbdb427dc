"""``pfplan profile overlap``: the formula, the CLI on two gloo ranks, and measured links resetting
a calibrated bandwidth efficiency."""

from __future__ import annotations

import json

import pytest

from profiles.costs.profile_format import LinkFit, Profile, ProfileProvenance
from profiler.links import measured_topology
from profiler.overlap import overlap_efficiency
from profiles.topology.graph import ClusterGraph, load_cluster
from tests.conftest import run_subprocess
from tests.planner.test_bad_input import assert_one_line_error


@pytest.mark.parametrize("compute, comm, both, expected", [
    (1.0, 0.5, 1.0, 1.0),     # the gather hid completely
    (1.0, 0.5, 1.5, 0.0),     # it ran after the compute
    (1.0, 0.5, 1.25, 0.5),    # half of it hid
    (1.0, 0.5, 1.7, 0.0),     # slower than serial (contention): clipped
    (1.0, 0.5, 0.9, 1.0),     # faster than the compute alone (noise): clipped
])
def test_overlap_efficiency_inverts_the_simulators_formula(compute, comm, both, expected):
    assert overlap_efficiency(compute, comm, both) == pytest.approx(expected)
    e = overlap_efficiency(compute, comm, both)
    if 0 < e < 1:  # the simulator's pass with this e takes exactly the measured time
        assert max(compute, e * comm) + (1 - e) * comm == pytest.approx(both)


@pytest.mark.slow
def test_two_gloo_ranks_measure_an_overlap_and_write_it_into_the_topology(tmp_path):
    topo = tmp_path / "mine.yaml"
    result = run_subprocess("planner", "profile", "overlap", "--nprocs", "2", "--repeats", "2", "--compute-s", "0.05",
                            "--write-topology", topo, "--json", timeout=240)
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert 0.0 <= report["overlap_efficiency"] <= 1.0
    assert len(report["both_s"]) == 2 and report["world"] == 2 and report["bytes_per_rank"] >= 4096
    assert all(t > 0 for key in ("compute_s", "comm_s", "both_s") for t in report[key])
    comm = load_cluster(str(topo)).topology.communication
    assert comm.overlap_efficiency == pytest.approx(report["overlap_efficiency"], abs=1e-4)
    assert comm.source.startswith("overlap_efficiency measured by `pfplan profile overlap --nprocs 2")


def test_bad_overlap_arguments_are_one_line(pfplan, tmp_path):
    assert_one_line_error(pfplan("profile", "overlap", "--nprocs", "3"), "--nprocs", "3 processes but the topology")
    assert_one_line_error(pfplan("profile", "overlap", "--device", "tpu"), "--device", "unknown device 'tpu'")
    assert_one_line_error(pfplan("profile", "overlap", "--write-topology", tmp_path), "is a directory")


def test_measured_links_reset_a_calibrated_bandwidth_efficiency_and_keep_the_overlap():
    pcie8 = load_cluster("pcie8")
    assert pcie8.topology.communication.bandwidth_efficiency < 1
    profile = Profile(model=None, device="l40", device_name="L40",
                      links=[LinkFit(route_class="PIX", pairs=["0->1"], latency_us=5.0, bandwidth_gb_s=9.0)],
                      provenance=ProfileProvenance(kind="measured", command="pfplan profile links"))
    topo = measured_topology(pcie8, profile, command="pfplan profile links")
    comm = topo.communication
    assert comm.bandwidth_efficiency == 1.0
    assert comm.overlap_efficiency == pcie8.topology.communication.overlap_efficiency
    assert "reset to 1" in comm.source and "Borrowed" in comm.source
    before, after = pcie8, ClusterGraph(topo)
    assert after.route("node0/gpu0", "node0/gpu1").bottleneck_gb_s == pytest.approx(9.0)
    # unmeasured links (switch uplinks, the socket link) keep their effective speed
    e = pcie8.topology.communication.bandwidth_efficiency
    assert after.topology.nodes[0].socket_link.bandwidth_gb_s == pytest.approx(
        e * before.topology.nodes[0].socket_link.bandwidth_gb_s)
    uplink = after.topology.nodes[0].sockets[0].switches[0].uplink.bandwidth_gb_s
    assert uplink == pytest.approx(e * before.topology.nodes[0].sockets[0].switches[0].uplink.bandwidth_gb_s)
