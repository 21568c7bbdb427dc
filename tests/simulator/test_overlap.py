"""How much compute each overlapped collective can hide behind (closed forms on tiny timelines).

Ring attention's K/V of layer l exist only after layer l's projections and are consumed by
its attention, so they hide behind ``f = attention share · (r−1)/r`` of the compute: a pass
takes ``(1−f)·C + max(f·C, comm)``. DistriFusion's stale K/V hide behind the whole pass,
except in the first step, which has no stale K/V.
"""

from __future__ import annotations

import pytest

from profiles.costs.cost_model import LayerShape
from profiles.costs.flops import attention_flops, layer_flops
from profiles.catalog.models import load_model
from simulator.engine import simulate
from simulator.estimate import estimate_latency_s
from simulator.plan import Degrees, ParallelPlan
from tests.simulator.fakes import ConstantCost, star_cluster

TINY = load_model("pixart-tiny")  # 4 blocks, 16×16 = 256 tokens, CFG (batch 2)
BLOCKS, TOKENS, BATCH, DT = 4, 256, 2, 2
C = 4.0  # compute of one pass: 4 blocks at 1 s


def ring_comm_s(r: int, bandwidth_gb_s: float) -> float:
    """One ring pass per block: r−1 rounds, each moving this rank's K/V block (k/r tokens)."""
    per_block = 2 * (TOKENS // r) * TINY.arch.hidden_size * BATCH * DT
    return (r - 1) * BLOCKS * per_block / (bandwidth_gb_s * 1e9)


def gather_s(r: int, bandwidth_gb_s: float) -> float:
    """The output gather after the pass: r−1 rounds of this rank's share of the prediction."""
    from simulator.strategies.cfg import prediction_bytes

    return (r - 1) * -(-prediction_bytes(TINY, TOKENS, DT) // r) / (bandwidth_gb_s * 1e9)


def hideable_fraction(r: int) -> float:
    shape = LayerShape("pixart_block", TOKENS // r, TOKENS, BATCH)
    share = attention_flops(TINY.arch, shape, text_tokens=TINY.text_tokens) \
        / layer_flops(TINY.arch, shape, text_tokens=TINY.text_tokens)
    return share * (r - 1) / r


def ring_run(bandwidth_gb_s: float, r: int = 2, steps: int = 1):
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=steps, degrees=Degrees(ring=r))
    return plan, simulate(plan, TINY, star_cluster(r, bandwidth_gb_s=bandwidth_gb_s), ConstantCost(1.0),
                          record_trace=True)


def test_attention_share_of_a_pixart_block_is_between_zero_and_one():
    f = hideable_fraction(2)
    assert 0.05 < f < 0.5  # half of the attention share, which is well below 1 at 256 tokens


def test_ring_pass_longer_than_the_attention_share_is_exposed_by_exactly_comm_minus_fc():
    f = hideable_fraction(2)
    bandwidth = ring_comm_s(2, 1.0) / (f * C + 1.5)  # comm = f·C + 1.5 s
    comm = ring_comm_s(2, bandwidth)
    assert comm == pytest.approx(f * C + 1.5)
    _, result = ring_run(bandwidth)
    g = gather_s(2, bandwidth)
    events = [(e[1], e[4], e[5]) for e in result.log() if e[0] == "d0c0s0"]
    assert events == [("compute", 0.0, pytest.approx(C)),
                      ("exposed_communication", pytest.approx(C), pytest.approx((1 - f) * C + comm)),
                      ("exposed_communication", pytest.approx((1 - f) * C + comm),
                       pytest.approx((1 - f) * C + comm + g))]  # the output gather
    assert result.prediction.breakdown_s["exposed_communication"] == pytest.approx(comm - f * C + g)
    assert result.latency_s == pytest.approx((1 - f) * C + max(f * C, comm) + g)


def test_ring_pass_shorter_than_the_attention_share_is_hidden():
    f = hideable_fraction(2)
    bandwidth = ring_comm_s(2, 1.0) / (0.5 * f * C)  # comm = f·C / 2
    plan, result = ring_run(bandwidth, steps=2)
    g = gather_s(2, bandwidth)  # only the output gather is exposed
    assert result.prediction.breakdown_s["exposed_communication"] == pytest.approx(2 * g)
    assert result.latency_s == pytest.approx(2 * C + 2 * g)


@pytest.mark.parametrize("r", [2, 4])
def test_estimate_uses_the_same_overlap_as_the_engine(r):
    f = hideable_fraction(r)
    bandwidth = ring_comm_s(r, 1.0) / (f * C + 2.0)
    plan, result = ring_run(bandwidth, r=r, steps=3)
    expected = 3 * ((1 - f) * C + ring_comm_s(r, bandwidth) + gather_s(r, bandwidth))
    assert result.latency_s == pytest.approx(expected)
    assert estimate_latency_s(plan, TINY, star_cluster(r, bandwidth_gb_s=bandwidth), ConstantCost(1.0)) \
        == pytest.approx(expected)


def test_more_ranks_hide_a_larger_fraction_of_the_attention():
    assert hideable_fraction(2) < hideable_fraction(4) < hideable_fraction(8)


def distrifusion_exposed(warmup: int) -> float:
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=2,
                        degrees=Degrees(distrifusion=2), warmup_steps=warmup)
    result = simulate(plan, TINY, star_cluster(2, bandwidth_gb_s=1e-3), ConstantCost(1.0), record_trace=True)
    return sum(e[5] - e[4] for e in result.log()
               if e[0] == "d0c0s0" and e[1] == "exposed_communication" and e[2] == 0)


def test_distrifusion_first_step_is_synchronous_even_without_warmup():
    """Slow links: step 0's K/V all-gathers block whether or not W = 1 (nothing stale exists yet)."""
    per_layer = 2 * (TOKENS // 2) * TINY.arch.hidden_size * BATCH * DT
    blocking = BLOCKS * per_layer / 1e6  # one round at 1 MB/s
    assert distrifusion_exposed(0) >= blocking
    assert distrifusion_exposed(0) == pytest.approx(distrifusion_exposed(1))


@pytest.mark.parametrize("warmup", [0, 1])
def test_estimate_prices_distrifusion_first_step_synchronously_like_the_engine(warmup):
    plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=3,
                        degrees=Degrees(distrifusion=2), warmup_steps=warmup)
    cluster = star_cluster(2, bandwidth_gb_s=1e-3)
    simulated = simulate(plan, TINY, cluster, ConstantCost(1.0)).latency_s
    assert estimate_latency_s(plan, TINY, cluster, ConstantCost(1.0)) == pytest.approx(simulated)
