"""Long runs: simulated until the per-step pattern repeats, then extrapolated, equal to whole simulations."""

from __future__ import annotations

import time

import pytest

from profiles.catalog.models import load_model
from profiles.costs.selection import cost_model_for
from profiles.topology.graph import load_cluster
from simulator.engine import simulate
from simulator.errors import PlanError, SimulatorError
from simulator.limits import MAX_STEPS
from simulator.plan import ParallelPlan, parse_parallel_spec

CASES = [("pixart-alpha", 512, "pcie8", "pipefusion=4,patches=8,warmup=1"),
         ("pixart-alpha", 512, "pcie8", "cfg=2,ulysses=2"),
         ("flux-tiny", 256, "l40-2node", "data=2,pipefusion=2,ulysses=2,patches=4,warmup=2")]


def _setup(model_name: str, px: int, topology: str, spec: str, steps: int):
    model, cluster = load_model(model_name), load_cluster(topology)
    plan = ParallelPlan(model=model_name, height_px=px, width_px=px, steps=steps, **parse_parallel_spec(spec))
    return plan, model, cluster, cost_model_for(model, cluster.gpu_of(cluster.devices[0]))


@pytest.mark.parametrize("case", CASES, ids=[c[3] for c in CASES])
def test_extrapolation_equals_the_whole_simulation(case):
    plan, model, cluster, cost = _setup(*case, steps=120)
    short = simulate(plan, model, cluster, cost, extrapolate=True)
    whole = simulate(plan, model, cluster, cost, extrapolate=False)
    assert short.latency_s == pytest.approx(whole.latency_s, rel=1e-9)
    for key, value in whole.prediction.breakdown_s.items():
        assert short.prediction.breakdown_s[key] == pytest.approx(value, rel=1e-9, abs=1e-9)
    assert short.prediction.bytes_by_route_class == whole.prediction.bytes_by_route_class
    assert short.traffic.transfers == whole.traffic.transfers
    assert short.utilisation == pytest.approx(whole.utilisation, rel=1e-9)


def test_a_million_steps_simulate_a_few_dozen_and_follow_the_extrapolation(monkeypatch):
    """Bounded work, counted rather than timed (the time, ≤ 1 s, is benchmarks/simulate_speed.py's):
    the steps begun by every simulation the call runs stay a few dozen."""
    from simulator.engine import Simulation

    plan, model, cluster, cost = _setup("pixart-alpha", 1024, "pcie8", "pipefusion=8,patches=8,warmup=1", 10 ** 6)
    begun = []
    original = Simulation.step_began

    def counted(self, step: int, index: int) -> None:
        begun.append(step)
        assert len(begun) <= 200, "the million-step run is being simulated step by step"  # fail, not hang
        original(self, step, index)

    monkeypatch.setattr(Simulation, "step_began", counted)
    result = simulate(plan, model, cluster, cost)
    monkeypatch.undo()
    assert len(begun) > 0
    # the same run, 60 and 61 steps long, simulated whole: a million steps add (10^6 − 60) of that step
    r60, r61 = (simulate(plan.model_copy(update={"steps": n}), model, cluster, cost, extrapolate=False)
                for n in (60, 61))
    more = 10 ** 6 - 60
    assert result.latency_s == pytest.approx(r60.latency_s + more * (r61.latency_s - r60.latency_s), rel=1e-9)
    assert result.traffic.transfers == r60.traffic.transfers + more * (r61.traffic.transfers - r60.traffic.transfers)
    for route_class, nbytes in r61.prediction.bytes_by_route_class.items():
        before = r60.prediction.bytes_by_route_class[route_class]
        assert result.prediction.bytes_by_route_class[route_class] == before + more * (nbytes - before)
    for key, value in r61.prediction.breakdown_s.items():
        before = r60.prediction.breakdown_s[key]
        assert result.prediction.breakdown_s[key] == pytest.approx(before + more * (value - before), rel=1e-9,
                                                                   abs=1e-9 * result.latency_s), key


@pytest.mark.parametrize("spec", ["cfg=2,pipefusion=2,patches=4,warmup=1", "data=2,pipefusion=4,patches=8,warmup=2"])
def test_a_million_steps_of_coupled_replicas_take_under_a_second(spec):
    """CFG groups exchange predictions and data replicas share links: the whole state still repeats."""
    plan, model, cluster, cost = _setup("pixart-alpha", 512, "pcie8", spec, 10 ** 6)
    start = time.process_time()
    result = simulate(plan, model, cluster, cost)
    assert time.process_time() - start < 1.0
    r40, r41 = (simulate(plan.model_copy(update={"steps": n}), model, cluster, cost, extrapolate=False)
                for n in (40, 41))
    assert result.latency_s == pytest.approx(r40.latency_s + (10 ** 6 - 40) * (r41.latency_s - r40.latency_s),
                                             rel=1e-9)


def test_more_steps_than_the_limit_are_refused_in_one_line():
    plan, model, cluster, cost = _setup("pixart-alpha", 512, "pcie8", "pipefusion=2", MAX_STEPS + 1)
    with pytest.raises(PlanError) as info:
        simulate(plan, model, cluster, cost)
    assert "steps:" in info.value.one_line() and "\n" not in info.value.one_line()


def test_a_direct_run_too_long_to_simulate_is_refused_naming_the_limit():
    plan, model, cluster, cost = _setup("pixart-alpha", 512, "pcie8", "pipefusion=8,patches=8", 10 ** 5)
    with pytest.raises(SimulatorError) as info:
        simulate(plan, model, cluster, cost, extrapolate=False)
    assert "stage passes" in info.value.one_line() and "2,000,000" in info.value.one_line()
