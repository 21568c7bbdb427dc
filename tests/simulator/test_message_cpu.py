"""A stage message's CPU at both ends (links profile ``in_loop_send_cpu_us`` / ``in_loop_recv_cpu_us``).

The measured in-loop latency is a message's time from its post to the receiver's use; the receiver's
CPU is part of it, so the wire keeps the rest and the post-to-use time is unchanged, while both
ranks are busy for their share (which a pipeline's next pass cannot hide).
"""

from __future__ import annotations

import pytest

from profiles.catalog.models import load_model
from simulator.engine import simulate
from simulator.estimate import estimate_latency_s
from simulator.network import FairShareNetwork, LinkFit
from simulator.plan import Degrees, ParallelPlan
from tests.simulator.fakes import ConstantCost, star_cluster

TINY = load_model("pixart-tiny")
CLUSTER = star_cluster(2, bandwidth_gb_s=1.0, latency_us=5.0)
ROUTE = CLUSTER.route(*CLUSTER.devices[:2])
LATENCY_US, SEND_S, RECV_S = 500.0, 1e-4, 2e-4


def fits(send_s: float = SEND_S, recv_s: float = RECV_S) -> dict[str, LinkFit]:
    return {ROUTE.route_class: LinkFit(LATENCY_US, 2.0, send_cpu_s=send_s, recv_cpu_s=recv_s)}


def plan(patches: int = 2, steps: int = 3) -> ParallelPlan:
    return ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=steps,
                        degrees=Degrees(pipefusion=2), patches=patches, warmup_steps=1)


def test_unmeasured_routes_keep_the_whole_latency_on_the_wire() -> None:
    net = FairShareNetwork(None, CLUSTER, link_fits=fits(0.0, 0.0))  # type: ignore[arg-type]
    assert net.message_cpu(ROUTE) == (0.0, 0.0, 1.0)
    assert FairShareNetwork(None, CLUSTER).message_cpu(ROUTE) == (0.0, 0.0, 1.0)  # type: ignore[arg-type]


def test_the_receivers_cpu_leaves_the_wire() -> None:
    net = FairShareNetwork(None, CLUSTER, link_fits=fits())  # type: ignore[arg-type]
    send, recv, share = net.message_cpu(ROUTE)
    assert (send, recv) == (SEND_S, RECV_S)
    assert share * LATENCY_US * 1e-6 == pytest.approx(LATENCY_US * 1e-6 - RECV_S)


def test_both_ends_are_charged_and_the_post_to_use_time_is_unchanged() -> None:
    cost = ConstantCost(block_s=1e-3)
    with_cpu = simulate(plan(), TINY, CLUSTER, cost, link_fits=fits(), record_trace=True)
    without = simulate(plan(), TINY, CLUSTER, cost, link_fits=fits(0.0, 0.0), record_trace=True)
    sent = [e for e in with_cpu.events if e.name == "activations (sender CPU)"]
    received = [e for e in with_cpu.events if e.name == "receive (CPU)"]
    assert sent and all(e.end_s - e.start_s == pytest.approx(SEND_S) and e.stage == 0 for e in sent)
    assert {e.stage for e in received} == {0, 1}  # stage 1 takes patches, stage 0 the latents sent back
    assert all(e.end_s - e.start_s == pytest.approx(RECV_S) for e in received)
    assert not [e for e in without.events if "CPU" in e.name]

    def first_blocks_on_stage_1(result) -> float:
        return min(e.start_s for e in result.events if e.stage == 1 and e.name == "blocks")

    # the first patch's message: posted at the same time in both runs; used RECV_S after it lands
    assert first_blocks_on_stage_1(with_cpu) == pytest.approx(first_blocks_on_stage_1(without))
    assert with_cpu.latency_s > without.latency_s


def test_the_fast_path_prices_it_as_the_trace_does() -> None:
    cost = ConstantCost(block_s=1e-3)
    for patches in (2, 4, 8):
        traced = simulate(plan(patches), TINY, CLUSTER, cost, link_fits=fits(), record_trace=True)
        fast = simulate(plan(patches), TINY, CLUSTER, cost, link_fits=fits())
        assert fast.latency_s == pytest.approx(traced.latency_s, rel=1e-9)


def test_more_messages_cost_more_and_the_estimate_takes_the_larger_of_latency_and_cpu() -> None:
    cost = ConstantCost(block_s=1e-3)
    extra = {m: simulate(plan(m), TINY, CLUSTER, cost, link_fits=fits()).latency_s
             - simulate(plan(m), TINY, CLUSTER, cost, link_fits=fits(0.0, 0.0)).latency_s for m in (2, 8)}
    assert 0 < extra[2] < extra[8]
    # the estimate: a message costs its post-to-use time, or both ends' CPU where that is more
    estimated = {f: estimate_latency_s(plan(8), TINY, CLUSTER, cost, link_fits=fits(*f))
                 for f in ((0.0, 0.0), (SEND_S, RECV_S), (4e-4, 4e-4))}
    assert estimated[(SEND_S, RECV_S)] == pytest.approx(estimated[(0.0, 0.0)])  # 0.3 ms under a 0.5 ms latency
    assert estimated[(4e-4, 4e-4)] > estimated[(0.0, 0.0)]
