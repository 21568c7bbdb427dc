"""Links serialise the transfers that share them; disjoint transfers overlap; bytes are counted once."""

from __future__ import annotations

import pytest
import simpy

from profiles.topology.graph import ClusterGraph
from profiles.topology.graph import load_cluster as load_shipped
from tests.simulator.fakes import with_communication


def load_cluster(name: str) -> ClusterGraph:
    """A shipped topology with ideal communication: these tests check the links' arithmetic,
    not a box's calibrated efficiencies (tests/simulator/test_communication_efficiency.py)."""
    return with_communication(load_shipped(name))
from simulator.network import NETWORK_MODELS
from tests.simulator.fakes import star_cluster

GB = 10 ** 9


def run_transfers(cluster, transfers, model="fifo"):
    """Run ``name → (src, dst, bytes[, start_s])`` transfers; return when each finished."""
    env = simpy.Environment()
    net = NETWORK_MODELS[model](env, cluster)
    done = {}

    def one(name, src, dst, nbytes, start=0.0):
        if start:
            yield env.timeout(start)
        yield env.process(net.transfer(src, dst, nbytes))
        done[name] = env.now

    for name, spec in transfers.items():
        env.process(one(name, *spec))
    env.run()
    return done, net


BOTH = pytest.mark.parametrize("model", ["fifo", "fair"])


@BOTH
def test_one_transfer_is_latency_plus_bytes_over_bottleneck(model):
    cluster = star_cluster(2, bandwidth_gb_s=2.0, latency_us=5.0)
    done, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu1", GB)}, model)
    assert done == {"a": pytest.approx(2 * 5e-6 + 0.5)}


@BOTH
def test_two_transfers_into_one_gpu_share_its_link_and_take_twice_as_long(model):
    cluster = star_cluster(3)
    one, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu2", GB)}, model)
    two, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu2", GB),
                                     "b": ("node0/gpu1", "node0/gpu2", GB)}, model)
    assert one == {"a": pytest.approx(1.0)}
    # fifo: one after the other; fair: side by side at half the bandwidth each
    assert two == {"a": pytest.approx(1.0 if model == "fifo" else 2.0), "b": pytest.approx(2.0)}
    assert max(two.values()) == pytest.approx(2 * max(one.values()))


@BOTH
def test_disjoint_transfers_overlap(model):
    cluster = star_cluster(4)
    done, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu1", GB),
                                      "b": ("node0/gpu2", "node0/gpu3", GB)}, model)
    assert done == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


@BOTH
def test_opposite_directions_do_not_contend(model):
    cluster = star_cluster(2)
    done, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu1", GB),
                                      "b": ("node0/gpu1", "node0/gpu0", GB)}, model)
    assert done == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}


@BOTH
def test_pcie_switch_uplink_is_shared_but_nvlink_pairs_are_not(model):
    pcie = load_cluster("a100-pcie4")  # gpu0, gpu1 behind sw0; gpu2, gpu3 behind sw1
    transfers = {"a": ("node0/gpu0", "node0/gpu2", GB), "b": ("node0/gpu1", "node0/gpu3", GB)}
    done, _ = run_transfers(pcie, transfers, model)
    route = pcie.route("node0/gpu0", "node0/gpu2")
    alone = route.transfer_time_s(GB)
    if model == "fifo":
        assert sorted(done.values()) == pytest.approx([alone, 2 * alone])
    else:  # both share the uplinks for the whole time; latency is paid once each, side by side
        assert sorted(done.values()) == pytest.approx([alone + GB / (route.bottleneck_gb_s * 1e9)] * 2)
    nvlink = load_cluster("a100-nvlink8")
    done, _ = run_transfers(nvlink, transfers, model)
    alone = nvlink.route("node0/gpu0", "node0/gpu2").transfer_time_s(GB)
    assert sorted(done.values()) == pytest.approx([alone, alone])


@BOTH
def test_many_crossing_transfers_finish_and_bytes_are_conserved(model):
    cluster = load_cluster("pcie8")
    devices = cluster.devices
    transfers = {f"{a}->{b}": (a, b, 1000 * (i + 1)) for i, (a, b) in
                 enumerate((a, b) for a in devices for b in devices if a != b)}
    done, net = run_transfers(cluster, transfers, model)
    assert len(done) == len(transfers)
    total = sum(n for _, _, n in transfers.values())
    t = net.traffic
    assert sum(t.by_route_class.values()) == sum(t.sent_by_device.values()) == sum(t.received_by_device.values()) \
        == total


@BOTH
def test_same_device_transfer_is_free_and_uncounted(model):
    done, net = run_transfers(star_cluster(2), {"a": ("node0/gpu0", "node0/gpu0", GB)}, model)
    assert done == {"a": 0.0} and net.traffic.transfers == 0


def test_fair_sharing_lets_a_small_message_pass_a_bulk_transfer():
    """fifo queues the small one behind the bulk one (head-of-line blocking); fair does not."""
    cluster = star_cluster(2)
    transfers = {"bulk": ("node0/gpu0", "node0/gpu1", GB), "small": ("node0/gpu0", "node0/gpu1", 10 ** 6, 0.1)}
    fifo, _ = run_transfers(cluster, transfers, "fifo")
    fair, _ = run_transfers(cluster, transfers, "fair")
    assert fifo == {"bulk": pytest.approx(1.0), "small": pytest.approx(1.001)}
    assert fair == {"small": pytest.approx(0.102), "bulk": pytest.approx(1.001)}


def test_fair_sharing_is_work_conserving_on_one_link():
    """Side by side at half speed until the shorter one ends, then the longer one at full speed."""
    cluster = star_cluster(3)
    done, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu2", GB),
                                      "b": ("node0/gpu1", "node0/gpu2", GB // 2)}, "fair")
    assert done == {"b": pytest.approx(1.0), "a": pytest.approx(1.5)}


def test_fair_sharing_takes_the_smallest_share_along_the_route():
    """a and b share gpu2's link; c shares gpu0's link with a: a gets min(1/2, 1/2), c the rest."""
    cluster = star_cluster(4)
    done, _ = run_transfers(cluster, {"a": ("node0/gpu0", "node0/gpu2", GB), "b": ("node0/gpu1", "node0/gpu2", GB),
                                      "c": ("node0/gpu0", "node0/gpu3", GB)}, "fair")
    assert done == {"a": pytest.approx(2.0), "b": pytest.approx(2.0), "c": pytest.approx(2.0)}


@BOTH
def test_measured_link_fits_replace_the_topology_figures_for_their_route_class(model):
    from simulator.network import LinkFit

    cluster = load_cluster("a100-pcie4")
    env = simpy.Environment()
    net = NETWORK_MODELS[model](env, cluster, link_fits={"PIX": LinkFit(latency_us=50.0, bandwidth_gb_s=5.0)})
    env.process(net.transfer("node0/gpu0", "node0/gpu1", GB))  # PIX: measured
    env.run()
    assert env.now == pytest.approx(50e-6 + GB / 5e9)
    env3 = simpy.Environment()  # a measurement above the data sheet wins too
    net3 = NETWORK_MODELS[model](env3, cluster, link_fits={"PIX": LinkFit(latency_us=0.0, bandwidth_gb_s=44.0)})
    env3.process(net3.transfer("node0/gpu0", "node0/gpu1", GB))
    env3.process(net3.transfer("node0/gpu0", "node0/gpu1", GB))
    env3.run()
    assert env3.now == pytest.approx(2 * GB / 44e9)
    env2 = simpy.Environment()
    net2 = NETWORK_MODELS[model](env2, cluster, link_fits={"PIX": LinkFit(latency_us=50.0, bandwidth_gb_s=5.0)})
    env2.process(net2.transfer("node0/gpu0", "node0/gpu2", GB))  # PHB: the topology's figures
    env2.run()
    assert env2.now == pytest.approx(cluster.route("node0/gpu0", "node0/gpu2").transfer_time_s(GB))


def test_links_that_never_bind_are_the_faster_side_of_a_two_neighbour_relay():
    """A NIC relays only between its switch and the fabric: of the two links through it, the faster one
    carries every transfer the slower one does, so its share is never the smallest and is not tracked."""
    from profiles.topology.graph import ClusterGraph, load_cluster
    from simulator.network import never_binding

    l40 = load_cluster("l40-2node")  # NIC ↔ switch 22 GB/s, NIC ↔ fabric 25 GB/s
    route = l40.route("node0/gpu0", "node1/gpu1")
    left_out = [link for link in route.links if never_binding(l40, link)]
    assert left_out == [("node0/nic0", "fabric"), ("fabric", "node1/nic0")]
    slow_fabric = l40.topology.model_copy(update={"network": l40.topology.network.model_copy(
        update={"bandwidth_gb_s": 10.0})})
    slow = ClusterGraph(slow_fabric)
    assert [link for link in route.links if never_binding(slow, link)] == [("node0/sw0", "node0/nic0"),
                                                                            ("node1/nic0", "node1/sw0")]
    pcie8 = load_cluster("pcie8")  # no relay with two neighbours: every link can bind
    assert not any(never_binding(pcie8, link) for a in pcie8.devices for b in pcie8.devices
                   for link in pcie8.route(a, b).links)


def test_leaving_out_links_that_never_bind_changes_no_time():
    """Four transfers from one NIC's GPUs to other nodes, with and without the pruning: the same ends."""
    import simulator.network as network
    from profiles.topology.graph import load_cluster

    cluster = load_cluster("l40-2node")
    pairs = [("node0/gpu0", "node1/gpu0"), ("node0/gpu1", "node1/gpu2"), ("node0/gpu2", "node1/gpu4"),
             ("node0/gpu3", "node1/gpu1")]

    def ends(prune: bool) -> list[float]:
        env = simpy.Environment()
        net = network.FairShareNetwork(env, cluster)
        if not prune:
            net._binds = dict.fromkeys(cluster.graph.edges, True) | {(v, u): True for u, v in cluster.graph.edges}
        out = []

        def one(i, src, dst):
            yield env.timeout(i * 1e-4)
            yield from net.transfer(src, dst, 10 ** 7 * (i + 1))
            out.append((i, env.now))

        for i, (src, dst) in enumerate(pairs):
            env.process(one(i, src, dst))
        env.run()
        return sorted(out)

    assert ends(True) == ends(False)
