"""Invariants over random valid plans on the shipped topologies (hypothesis)."""

from __future__ import annotations

import os
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from profiles.costs.analytic import AnalyticCostModel
from profiles.catalog.models import load_model
from profiles.topology.graph import load_cluster
from simulator.engine import simulate
from simulator.plan import Degrees, ParallelPlan, violations
from tests.simulator.fakes import ScaledCost

TOPOLOGIES = ("a100-pcie4", "pcie8", "a100-nvlink8", "l40-2node")
MODELS = ("pixart-alpha", "sd3-medium", "hunyuan-dit", "dit-xl-2")
EXAMPLES = int(os.environ.get("PFPLAN_HYPOTHESIS_EXAMPLES", "30"))
"""Raise for a deeper search (400 examples per property found nothing on 2026-11-25)."""


@lru_cache(maxsize=None)
def cluster(name):
    return load_cluster(name)


@lru_cache(maxsize=None)
def model(name):
    return load_model(name)


@st.composite
def scenarios(draw, shuffle: bool = False):
    topo = draw(st.sampled_from(TOPOLOGIES))
    name = draw(st.sampled_from(MODELS))
    steps = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["hybrid", "distrifusion", "tensor"]))
    degrees = {"data": draw(st.sampled_from([1, 2])), "cfg": draw(st.sampled_from([1, 2]))}
    if kind == "hybrid":
        degrees.update(pipefusion=draw(st.sampled_from([1, 2, 4])), ulysses=draw(st.sampled_from([1, 2])),
                       ring=draw(st.sampled_from([1, 2])))
    else:
        degrees[kind] = draw(st.sampled_from([2, 4]))
    plan = ParallelPlan(model=name, height_px=512, width_px=draw(st.sampled_from([512, 1024])), steps=steps,
                        degrees=Degrees(**degrees), patches=draw(st.sampled_from([1, 2, 4, 8])),
                        warmup_steps=draw(st.integers(0, steps)))
    assume(not violations(plan, model(name), cluster(topo)))
    if shuffle:  # a random placement: contention patterns change
        devices = draw(st.permutations(cluster(topo).devices))[:plan.world_size]
        plan = plan.model_copy(update={"placement": list(devices)})
    return plan, topo


def run(plan, topo, **kw):
    m = model(plan.model)
    cost = kw.pop("cost", None) or AnalyticCostModel.for_gpu(m, cluster(topo).gpu_of(cluster(topo).devices[0]))
    return simulate(plan, m, cluster(topo), cost, **kw)


PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                           HealthCheck.too_slow])


@PROPERTY
@given(scenarios())
def test_same_input_gives_the_same_event_log(scenario):
    plan, topo = scenario
    a, b = run(plan, topo, record_trace=True), run(plan, topo, record_trace=True)
    assert a.log() == b.log()
    assert a.prediction == b.prediction


@PROPERTY
@given(scenarios(), st.sampled_from([1.5, 2.0, 10.0]))
def test_more_bandwidth_is_never_slower(scenario, factor):
    plan, topo = scenario
    assert run(plan, topo, bandwidth_scale=factor).latency_s <= run(plan, topo).latency_s * (1 + 1e-9)


@PROPERTY
@given(scenarios(), st.sampled_from([0.5, 0.9]))
def test_faster_compute_is_never_slower(scenario, factor):
    plan, topo = scenario
    m = model(plan.model)
    base = AnalyticCostModel.for_gpu(m, cluster(topo).gpu_of(cluster(topo).devices[0]))
    assert run(plan, topo, cost=ScaledCost(base, factor)).latency_s <= run(plan, topo, cost=base).latency_s * (1 + 1e-9)


ANOMALY = 0.02
"""Transfers are scheduled as they come, a list schedule, so Graham's anomalies exist: with
scrambled placements (cross-node all-to-alls of different groups sharing one link) faster
compute can reorder who shares with whom and finish slightly later; hypothesis found a
0.4 % case under the fifo model (docs/simulator.md). Default placements have shown none."""


@PROPERTY
@given(scenarios(shuffle=True), st.sampled_from([0.5, 0.9]), st.sampled_from([1.5, 2.0, 10.0]))
def test_random_placements_are_monotone_up_to_queueing_anomalies(scenario, compute, bandwidth):
    plan, topo = scenario
    m = model(plan.model)
    base = AnalyticCostModel.for_gpu(m, cluster(topo).gpu_of(cluster(topo).devices[0]))
    reference = run(plan, topo, cost=base).latency_s
    assert run(plan, topo, cost=ScaledCost(base, compute)).latency_s <= reference * (1 + ANOMALY)
    assert run(plan, topo, cost=base, bandwidth_scale=bandwidth).latency_s <= reference * (1 + ANOMALY)


@PROPERTY
@given(st.one_of(scenarios(), scenarios(shuffle=True)))
def test_latency_bounds_bytes_and_breakdown(scenario):
    plan, topo = scenario
    r = run(plan, topo)
    busy = {d: u * r.latency_s for d, u in r.utilisation.items()}
    assert r.latency_s >= max(busy.values()) * (1 - 1e-9)
    assert r.latency_s >= sum(busy.values()) / len(busy) * (1 - 1e-9)  # total compute / devices
    t = r.traffic
    assert sum(r.prediction.bytes_by_route_class.values()) == sum(t.sent_by_device.values()) \
        == sum(t.received_by_device.values())
    assert sum(r.prediction.breakdown_s.values()) == pytest.approx(r.latency_s, rel=1e-9)
    assert all(v >= 0 for v in r.prediction.breakdown_s.values())


class FlopsCost:
    """Compute time exactly proportional to FLOPs: splitting work never makes it cheaper or dearer."""

    name = "flops"

    def __init__(self, m) -> None:
        self.m = m

    def layer_time_s(self, shape) -> float:
        from profiles.costs.flops import layer_flops

        return layer_flops(self.m.arch, shape, text_tokens=self.m.text_tokens) / 1e14


@PROPERTY
@given(scenarios())
def test_latency_is_at_least_the_serial_compute_spread_over_every_rank(scenario):
    """An independent lower bound: the serial run's compute (priced by the same FLOP-proportional
    cost model, so no strategy gains by splitting) divided by the ranks and by the images."""
    plan, topo = scenario
    m = model(plan.model)
    cost = FlopsCost(m)
    serial = plan.model_copy(update={"degrees": Degrees(), "patches": 1, "warmup_steps": 0, "stage_split": None,
                                     "placement": []})
    serial_latency = run(serial, topo, cost=cost).latency_s
    parallel = run(plan, topo, cost=cost).latency_s
    assert parallel >= serial_latency / plan.world_size * plan.degrees.data * (1 - 1e-6)
