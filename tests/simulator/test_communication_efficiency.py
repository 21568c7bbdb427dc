"""A topology's communication efficiencies: achieved bandwidth and how much of an overlapped transfer hides.

``bandwidth_efficiency`` e_b scales every transfer's speed (not a measured fit's);
``overlap_efficiency`` e_o leaves ``e_o`` of an overlapped collective's bytes beside the
compute and moves the rest after it, and holds a PipeFusion sender for ``1 − e_o`` of its send.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles.models import load_model
from simulator.engine import simulate
from simulator.plan import Degrees, ParallelPlan
from simulator.strategies.base import CollectiveSpec, split_by_overlap
from tests.simulator.fakes import ConstantCost, star_cluster, with_communication
from tests.simulator.test_properties import PROPERTY, cluster, run, scenarios

TINY = load_model("pixart-tiny")  # 4 blocks, 16×16 = 256 tokens, CFG (batch 2), hidden 64
TOKENS, BATCH, DT = 256, 2, 2


def tiny_plan(**degrees: int) -> ParallelPlan:
    fields = {k: degrees.pop(k) for k in ("patches", "warmup_steps") if k in degrees}
    return ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=1, degrees=Degrees(**degrees),
                        **fields)


def test_split_keeps_blocking_and_ideal_collectives_whole():
    blocking = CollectiveSpec("tensor", "all_reduce", 100.0, 4, overlapped=False)
    overlapped = CollectiveSpec("ring", "ring_pass", 100.0, 4, overlapped=True, overlap_fraction=0.3)
    assert split_by_overlap(blocking, 0.2) == (blocking,)
    assert split_by_overlap(overlapped, 1.0) == (overlapped,)


def test_split_moves_the_unhidden_share_of_the_bytes_after_the_pass():
    spec = CollectiveSpec("ring", "ring_pass", 100.0, 4, overlapped=True, overlap_fraction=0.3)
    hidden, after = split_by_overlap(spec, 0.25)
    assert (hidden.overlapped, hidden.bytes_per_rank, hidden.messages, hidden.overlap_fraction) == (True, 25.0, 4, 0.3)
    assert (after.overlapped, after.bytes_per_rank, after.messages) == (False, 75.0, 0)
    (whole,) = split_by_overlap(spec, 0.0)
    assert (whole.overlapped, whole.bytes_per_rank, whole.messages) == (False, 100.0, 4)


def test_bandwidth_efficiency_stretches_a_blocking_collective_exactly():
    plan = tiny_plan(tensor=2)
    ideal = simulate(plan, TINY, star_cluster(2, bandwidth_gb_s=0.01), ConstantCost(1.0))
    half = simulate(plan, TINY, with_communication(star_cluster(2, bandwidth_gb_s=0.01), bandwidth=0.5),
                    ConstantCost(1.0))
    comm = ideal.prediction.breakdown_s["exposed_communication"]
    assert comm > 0.01
    assert half.prediction.breakdown_s["exposed_communication"] == pytest.approx(2 * comm)
    assert half.latency_s == pytest.approx(ideal.latency_s + comm)


def test_without_overlap_distrifusion_pays_its_gathers_after_the_compute():
    """Two steps (W = 1): the second step's gathers hide behind 4 s of compute when overlap works."""
    plan = tiny_plan(distrifusion=2, warmup_steps=1).model_copy(update={"steps": 2})
    star = star_cluster(2, bandwidth_gb_s=0.05)
    ideal = simulate(plan, TINY, star, ConstantCost(1.0))
    none = simulate(plan, TINY, with_communication(star, overlap=0.0), ConstantCost(1.0))
    per_step_gather = 4 * 2 * (TOKENS // 2) * TINY.arch.hidden_size * BATCH * DT / 0.05e9
    assert per_step_gather < 4.0  # hideable behind one pass
    assert none.latency_s - ideal.latency_s == pytest.approx(per_step_gather, rel=1e-6)


def test_without_overlap_a_pipefusion_sender_waits_for_its_sends():
    plan = tiny_plan(pipefusion=2, patches=2, warmup_steps=0).model_copy(update={"steps": 2})
    star = star_cluster(2, bandwidth_gb_s=0.01)
    ideal = simulate(plan, TINY, star, ConstantCost(1.0), record_trace=True)
    none = simulate(plan, TINY, with_communication(star, overlap=0.0), ConstantCost(1.0), record_trace=True)
    def held(result):
        return [e for e in result.events if e.name.endswith("(not overlapped)")]
    assert held(none) and not held(ideal)
    assert {e.name for e in held(none)} == {"activations (not overlapped)", "latent (not overlapped)"}
    assert none.latency_s > ideal.latency_s


def test_overlap_efficiency_changes_nothing_without_overlapped_traffic():
    plan = tiny_plan(ulysses=2)
    star = star_cluster(2, bandwidth_gb_s=0.01)
    assert simulate(plan, TINY, with_communication(star, overlap=0.0), ConstantCost(1.0)).latency_s == \
        simulate(plan, TINY, star, ConstantCost(1.0)).latency_s


@PROPERTY
@given(scenarios(), st.sampled_from([0.1, 0.4, 0.8]), st.sampled_from([0.0, 0.3, 0.7]))
def test_better_communication_is_never_slower(scenario, bandwidth, overlap):
    plan, topo = scenario
    worse = with_communication(cluster(topo), bandwidth=bandwidth, overlap=overlap)
    better_bw = with_communication(cluster(topo), bandwidth=min(1.0, 2 * bandwidth), overlap=overlap)
    better_ov = with_communication(cluster(topo), bandwidth=bandwidth, overlap=min(1.0, overlap + 0.3))
    m = load_model(plan.model)
    base = run(plan, topo).latency_s  # the shipped topology, whatever its calibration
    assert base > 0

    def latency(c):
        from profiles.analytic import AnalyticCostModel
        return simulate(plan, m, c, AnalyticCostModel.for_gpu(m, c.gpu_of(c.devices[0]))).latency_s

    slow = latency(worse)  # 1e-6: splitting a collective's bytes rounds each part to whole bytes
    assert latency(better_bw) <= slow * (1 + 1e-6)
    assert latency(better_ov) <= slow * (1 + 1e-6)
