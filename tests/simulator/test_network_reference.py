"""The fast fair-share network times transfers as the earlier one-timer-per-flow model did.

:class:`simulator.network.FairShareNetwork` keeps its completions in its own heap, re-times
a round's neighbours once and starts a round as one event; ``tests/simulator/reference_network.py``
is the model as it was before (one simpy timer per flow and per re-timing, one process per
transfer). Random transfer sets on shipped topologies (single transfers and rounds, started
at random or identical times, over shared and disjoint links) must end at the same times
and count the same traffic.
"""

from __future__ import annotations

import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.topology.graph import load_cluster
from simulator import collectives
from simulator.network import FairShareNetwork, LinkFit
from tests.simulator.reference_network import ReferenceFairShareNetwork

CLUSTERS = {name: load_cluster(name) for name in ("pcie8", "l40-2node")}
FITS = {"SYS": LinkFit(latency_us=9.0, bandwidth_gb_s=11.0)}
"""A measured fit on one route class: its routes run at a speed other than the data sheet's."""


@st.composite
def transfer_sets(draw):
    name = draw(st.sampled_from(sorted(CLUSTERS)))
    devices = CLUSTERS[name].devices
    rounds = []
    for _ in range(draw(st.integers(1, 14))):
        # starts on a coarse grid, so several rounds often begin (and end) at the same instant
        start = draw(st.integers(0, 6)) * 1e-3
        nbytes = draw(st.sampled_from([0, 1, 4096, 10 ** 6, 3 * 10 ** 6, 10 ** 7, 123_457]))
        messages = draw(st.integers(0, 3))
        kind = draw(st.sampled_from(["pairs", "pairs", "all_to_all", "ring_pass", "all_reduce"]))
        if kind == "pairs":
            pairs = draw(st.lists(st.tuples(st.sampled_from(devices), st.sampled_from(devices)), min_size=1,
                                  max_size=6))
        else:
            group = draw(st.lists(st.sampled_from(devices), min_size=2, max_size=6, unique=True))
            pairs = (kind, tuple(group))
        rounds.append((start, pairs, nbytes, messages))
    return name, rounds, draw(st.booleans())


def run(network_class, name: str, rounds, fitted: bool) -> tuple[list[float], dict]:
    env = simpy.Environment()
    net = network_class(env, CLUSTERS[name], link_fits=FITS if fitted else None)
    ends = [float("nan")] * len(rounds)

    def one(i, start, pairs, nbytes, messages):
        yield env.timeout(start)
        if isinstance(pairs, tuple):  # a collective: rounds back to back
            kind, group = pairs
            yield from collectives.ALGORITHMS[kind].run(net, list(group), nbytes, messages)
        elif len(pairs) == 1:
            yield from net.transfer(pairs[0][0], pairs[0][1], nbytes, messages)
        else:
            yield from collectives.exchange(net, pairs, nbytes, messages)
        ends[i] = env.now

    for i, spec in enumerate(rounds):
        env.process(one(i, *spec))
    env.run()
    t = net.traffic
    return ends, {"transfers": t.transfers, "class": t.by_route_class, "sent": t.sent_by_device,
                  "received": t.received_by_device, "links": t.by_link}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transfer_sets())
def test_fast_fair_share_ends_every_transfer_when_the_reference_does(case):
    name, rounds, fitted = case
    fast, fast_traffic = run(FairShareNetwork, name, rounds, fitted)
    slow, slow_traffic = run(ReferenceFairShareNetwork, name, rounds, fitted)
    assert fast == pytest.approx(slow, rel=1e-9, abs=1e-15)
    assert fast_traffic == slow_traffic


def test_a_round_priced_alone_turns_into_flows_when_another_transfer_needs_its_links():
    """An all-to-all alone on a switch is priced in closed form; a transfer over its links half-way
    through must see (and slow) its flows exactly as the reference does."""
    group = ("node0/gpu0", "node0/gpu1", "node0/gpu2", "node0/gpu3")
    alone = [(0.0, ("all_to_all", group), 4 * 10 ** 7, 1)]
    rounds = alone + [(2e-4, [("node0/gpu1", "node0/gpu2")], 10 ** 7, 1), (2.5e-4, [("node0/gpu0", "node0/gpu5")], 10 ** 6, 2)]
    fast, _ = run(FairShareNetwork, "pcie8", rounds, False)
    slow, _ = run(ReferenceFairShareNetwork, "pcie8", rounds, False)
    assert fast == pytest.approx(slow, rel=1e-9)
    by_itself, _ = run(ReferenceFairShareNetwork, "pcie8", alone, False)
    assert slow[0] > by_itself[0] * (1 + 1e-6), "the later transfers must slow the all-to-all down"


def test_the_comparison_can_fail():
    """A network that ignores contention ends shared transfers sooner than the reference."""

    class NoContention(FairShareNetwork):
        def _retime(self, flow, now):  # every link at its whole bandwidth while the flow is priced
            shares = [link.share for link in flow.links]
            for link in flow.links:
                link.share = link.bytes_per_s
            super()._retime(flow, now)
            for link, share in zip(flow.links, shares):
                link.share = share

    rounds = [(0.0, [("node0/gpu0", "node0/gpu1")], 10 ** 7, 1), (0.0, [("node0/gpu0", "node0/gpu1")], 10 ** 7, 1)]
    slow, _ = run(ReferenceFairShareNetwork, "pcie8", rounds, False)
    wrong, _ = run(NoContention, "pcie8", rounds, False)
    assert wrong != pytest.approx(slow, rel=1e-9)


WHOLE_RUNS = [("pcie8", "pixart-alpha", {"pipefusion": 4, "ulysses": 2}, 4),
              ("pcie8", "pixart-alpha", {"cfg": 2, "ring": 2, "ulysses": 2}, 1),
              ("l40-2node", "flux-dev", {"data": 2, "pipefusion": 2, "ring": 2, "ulysses": 2}, 2),
              ("l40-2node", "flux-dev", {"pipefusion": 8, "ulysses": 2}, 8),
              ("h100-nvlink8", "sd3-medium", {"data": 2, "cfg": 2, "tensor": 2}, 1),
              ("pcie8", "pixart-alpha", {"cfg": 2, "distrifusion": 4}, 4)]


@pytest.mark.parametrize("topology, model_name, degrees, patches", WHOLE_RUNS)
def test_whole_simulations_on_the_reference_network_predict_the_same(monkeypatch, topology, model_name, degrees,
                                                                        patches):
    """The engine on the earlier network (processes per transfer, one timer per flow) and on the fast one."""
    from planner.search import prepare
    from profiles.catalog.models import load_model
    from profiles.costs.selection import cost_model_for
    from simulator import engine
    from simulator.plan import ParallelPlan

    model, cluster = load_model(model_name), CLUSTERS.get(topology) or load_cluster(topology)
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    shape = ParallelPlan(model=model_name, height_px=1024, width_px=1024, steps=5, degrees=degrees,
                         patches=patches, warmup_steps=1)
    plan, _ = prepare(shape, model, cluster, cost)[0]
    fast = engine.simulate(plan, model, cluster, cost)
    monkeypatch.setitem(engine.NETWORK_MODELS, "fair", ReferenceFairShareNetwork)
    slow = engine.simulate(plan, model, cluster, cost)
    assert fast.latency_s == pytest.approx(slow.latency_s, rel=1e-9)
    assert fast.prediction.breakdown_s == pytest.approx(slow.prediction.breakdown_s, rel=1e-9, abs=1e-12)
    assert fast.traffic.by_link == slow.traffic.by_link and fast.traffic.transfers == slow.traffic.transfers


def _pairwise_round(group: tuple[str, ...], k: int) -> list[tuple[str, str]]:
    n = len(group)
    return [(group[i], group[(i + k) % n]) for i in range(n)]


@pytest.mark.parametrize("when", ["inside the first round", "at the first round's end", "inside the last round"])
def test_a_collective_priced_whole_splits_where_another_transfer_needs_its_links(when):
    """A ring pass on idle links runs all its rounds in closed form (one heap entry); a transfer over
    its links, started mid-round or exactly at a round boundary, must meet the round the reference is
    running then (the chain goes on round by round from there)."""
    group = ("node0/gpu0", "node0/gpu1", "node0/gpu4", "node0/gpu5")
    nbytes = 10 ** 7
    first_round, _ = run(ReferenceFairShareNetwork, "pcie8", [(0.0, _pairwise_round(group, 1), nbytes, 1)], False)
    whole, _ = run(ReferenceFairShareNetwork, "pcie8", [(0.0, ("ring_pass", group), nbytes, 1)], False)
    at = {"inside the first round": first_round[0] / 2, "at the first round's end": first_round[0],
          "inside the last round": whole[0] * 0.9}[when]
    rounds = [(0.0, ("ring_pass", group), nbytes, 1), (at, [("node0/gpu0", "node0/gpu6")], 10 ** 7, 1)]
    fast, fast_traffic = run(FairShareNetwork, "pcie8", rounds, False)
    slow, slow_traffic = run(ReferenceFairShareNetwork, "pcie8", rounds, False)
    assert fast == pytest.approx(slow, rel=1e-9)
    assert fast_traffic == slow_traffic
    assert slow[0] > whole[0] * (1 + 1e-6), "the transfer must slow the ring pass down"


def test_a_collective_on_idle_links_is_one_heap_entry():
    """The closed form is what runs: a ring pass of 8 ranks (7 rounds) alone wakes the network once, not
    once a round."""
    env = simpy.Environment()
    net = FairShareNetwork(env, CLUSTERS["pcie8"])
    group = [f"node0/gpu{i}" for i in range(8)]
    wakes = []
    original = net._wake
    net._wake = lambda at: (wakes.append(at), original(at))[1]

    def one():
        yield from collectives.ring_pass(net, group, 10 ** 6)

    env.process(one())
    env.run()
    assert len(wakes) == 1
    ends, _ = run(ReferenceFairShareNetwork, "pcie8", [(0.0, ("ring_pass", tuple(group)), 10 ** 6, 1)], False)
    assert env.now == pytest.approx(ends[0], rel=1e-9)
