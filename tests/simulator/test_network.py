"""Links serialise the transfers that share them; disjoint transfers overlap; bytes are counted once."""

from __future__ import annotations

import pytest
import simpy

from profiles.topology_graph import load_cluster
from simulator.network import Network
from tests.simulator.fakes import star_cluster

GB = 10 ** 9


def run_transfers(cluster, transfers):
    env = simpy.Environment()
    net = Network(env, cluster)
    done = {}

    def one(name, src, dst, nbytes):
        yield env.process(net.transfer(src, dst, nbytes))
        done[name] = env.now

    for name, (src, dst, nbytes) in transfers.items():
        env.process(one(name, src, dst, nbytes))
    env.run()
    return done, net


def test_one_transfer_is_latency_plus_bytes_over_bottleneck():
    cluster = star_cluster(2, bandwidth_gb_s=2.0, latency_us=5.0)
    done, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu1", GB)})
    assert done == {"a": pytest.approx(2 * 5e-6 + 0.5)}


def test_two_transfers_into_one_gpu_share_its_link_and_take_twice_as_long():
    cluster = star_cluster(3)
    one, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu2", GB)})
    two, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu2", GB), "b": ("node0/gpu1", "node0/gpu2", GB)})
    assert one == {"a": pytest.approx(1.0)}
    assert two == {"a": pytest.approx(1.0), "b": pytest.approx(2.0)}
    assert max(two.values()) == pytest.approx(2 * max(one.values()))


def test_disjoint_transfers_overlap():
    cluster = star_cluster(4)
    done, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu1", GB), "b": ("node0/gpu2", "node0/gpu3", GB)})
    assert done == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_opposite_directions_do_not_contend():
    cluster = star_cluster(2)
    done, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu1", GB), "b": ("node0/gpu1", "node0/gpu0", GB)})
    assert done == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


def test_pcie_switch_uplink_is_shared_but_nvlink_pairs_are_not():
    pcie = load_cluster("a100-pcie4")  # gpu0, gpu1 behind sw0; gpu2, gpu3 behind sw1
    transfers = {"a": ("node0/gpu0", "node0/gpu2", GB), "b": ("node0/gpu1", "node0/gpu3", GB)}
    done, _ = run_transfers(pcie, transfers)
    alone = pcie.route("node0/gpu0", "node0/gpu2").transfer_time_s(GB)
    assert sorted(done.values()) == pytest.approx([alone, 2 * alone])
    nvlink = load_cluster("a100-nvlink8")
    done, _ = run_transfers(nvlink, transfers)
    alone = nvlink.route("node0/gpu0", "node0/gpu2").transfer_time_s(GB)
    assert sorted(done.values()) == pytest.approx([alone, alone])


def test_many_crossing_transfers_finish_and_bytes_are_conserved():
    cluster = load_cluster("pcie8")
    devices = cluster.devices
    transfers = {f"{a}->{b}": (a, b, 1000 * (i + 1)) for i, (a, b) in
                 enumerate((a, b) for a in devices for b in devices if a != b)}
    done, net = run_transfers(cluster, transfers)
    assert len(done) == len(transfers)
    total = sum(n for _, _, n in transfers.values())
    t = net.traffic
    assert sum(t.by_route_class.values()) == sum(t.sent_by_device.values()) == sum(t.received_by_device.values()) \
        == total


def test_same_device_transfer_is_free_and_uncounted():
    done, net = run_transfers(star_cluster(2), {"a": ("node0/gpu0", "node0/gpu0", GB)})
    assert done == {"a": 0.0} and net.traffic.transfers == 0
