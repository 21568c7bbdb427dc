"""Stopping simulations that cannot change the search's answer changes none of it.

A run given ``stop_after_s`` either finishes exactly as without it (with the steady-state cut
it may finish, and be extended, below the limit) or raises ``SlowerThan`` with a bound, at
least the limit, that the full run's latency reaches; a search that stops placements and shapes
ranks the same top K (and writes the same plan) as one that runs every simulation to its end,
and each stopped shape's lower bound is below its full latency.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from planner.capacity import fastest_per_device_count
from planner.search import Candidate, SearchResult, SearchSettings, explain_losses, search
from planner.search_format import latency_text, search_report
from profiles.catalog.models import load_model
from profiles.costs.selection import cost_model_for
from profiles.topology.graph import load_cluster
from simulator.deadline import SlowerThan
from simulator.engine import simulate
from simulator.plan import Degrees, ParallelPlan, Prediction

PLANS = [({"pipefusion": 4}, 4), ({"pipefusion": 2, "ulysses": 2}, 4), ({"ulysses": 4}, 1),
         ({"cfg": 2, "pipefusion": 2}, 2), ({"ring": 2}, 1), ({"pipefusion": 8}, 8), ({"data": 2, "pipefusion": 2}, 2)]


@pytest.fixture(scope="module")
def pcie8():
    model, cluster = load_model("pixart-alpha"), load_cluster("pcie8")
    return model, cluster, cost_model_for(model, cluster.gpu_of(cluster.devices[0]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(PLANS), fraction=st.floats(0.01, 2.0), whole=st.booleans(),
       steps=st.sampled_from([3, 8, 20]))
def test_a_limited_run_is_the_full_run_or_a_true_lower_bound(pcie8, case, fraction, whole, steps):
    model, cluster, cost = pcie8
    degrees, patches = case
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=steps, degrees=degrees,
                        patches=patches, warmup_steps=1 if patches > 1 else 0,
                        placement=cluster.devices[:Degrees(**degrees).world_size()])
    extrapolate = False if whole else None
    full = simulate(plan, model, cluster, cost, extrapolate=extrapolate)
    limit = fraction * full.latency_s
    try:
        limited = simulate(plan, model, cluster, cost, extrapolate=extrapolate, stop_after_s=limit)
    except SlowerThan as stop:
        assert limit <= stop.bound_s <= full.latency_s  # the bound may be the work left (simulator.work_left)
        assert "slower than" in str(stop)
        return
    if whole:  # with the steady-state cut the run may end (and be extended) before the limit
        assert limit > full.latency_s
    assert repr(limited.prediction) == repr(full.prediction)
    assert limited.utilisation == full.utilisation


def test_a_run_ending_exactly_at_the_limit_counts_as_not_faster(pcie8):
    model, cluster, cost = pcie8
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=4, degrees={"pipefusion": 2},
                        patches=2, warmup_steps=1, placement=cluster.devices[:2])
    latency = simulate(plan, model, cluster, cost, extrapolate=False).latency_s
    with pytest.raises(SlowerThan):  # a tie cannot replace the best placement: stopping there is exact
        simulate(plan, model, cluster, cost, extrapolate=False, stop_after_s=latency)


def _rows(result, n):
    return [(c.plan.degrees.label(), c.plan.patches, c.plan.warmup_steps, c.plan.stage_split, c.plan.placement,
             c.latency_s, c.simulated, c.stopped, c.lost_because) for c in result.ranked[:n]]


@pytest.mark.slow
@pytest.mark.parametrize("topology, model_name, px, steps, objective, top, stops", [
    ("pcie8", "pixart-alpha", 2048, 20, "latency", 10, False),  # most runs settle, few or none pass their limit
    ("l40-2node", "flux-dev", 4096, 28, "latency", 10, True),  # deep pipelines that do not settle are stopped
    ("pcie8", "sd3-medium", 1024, 28, "throughput", 10, True)])
def test_stopped_search_ranks_the_top_k_as_the_full_runs_do(topology, model_name, px, steps, objective, top, stops):
    model, cluster = load_model(model_name), load_cluster(topology)
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    common = dict(objective=objective, simulate_top=top, placement_top=2)
    fast = search(model, cluster, cost, height_px=px, width_px=px, steps=steps, settings=SearchSettings(**common))
    full = search(model, cluster, cost, height_px=px, width_px=px, steps=steps,
                  settings=SearchSettings(exhaustive=True, **common))
    k = SearchSettings().exact_top
    assert _rows(fast, k) == _rows(full, k)
    assert full.counts["runs_stopped"] == 0
    if stops:
        assert fast.counts["runs_stopped"] > 0
    by_shape = {(c.plan.degrees.label(), c.plan.patches): c for c in full.ranked if c.simulated}
    kth = full.ranked[k - 1].objective_key(objective)
    for cand in fast.ranked[k:]:
        twin = by_shape.get((cand.plan.degrees.label(), cand.plan.patches))
        if cand.stopped:
            assert twin is not None and twin.latency_s >= cand.latency_s
            assert twin.objective_key(objective) > kth
            assert cand.lost_because.startswith("at least")
        elif cand.simulated:
            assert twin is not None and twin.latency_s == cand.latency_s and twin.plan.placement == cand.plan.placement


@pytest.mark.slow
def test_capacity_sees_each_device_counts_fastest_plan_finished():
    model, cluster = load_model("pixart-alpha"), load_cluster("pcie8")
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    common = dict(simulate_top=8, placement_top=1, best_per_device_count=True)
    fast = search(model, cluster, cost, height_px=1024, width_px=1024, steps=20, settings=SearchSettings(**common))
    full = search(model, cluster, cost, height_px=1024, width_px=1024, steps=20,
                  settings=SearchSettings(exhaustive=True, **common))
    pick = lambda result: {n: (c.plan.degrees.label(), c.plan.patches, c.latency_s)  # noqa: E731
                           for n, c in fastest_per_device_count(result).items()}
    assert pick(fast) == pick(full)


def _cand(label: Degrees, latency: float, *, stopped: bool = False) -> Candidate:
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=20, degrees=label)
    return Candidate(plan, "greedy", latency * 0.9, 1, 2, "d", None,
                     None if stopped else Prediction(latency_s=latency), stopped_at_s=latency if stopped else None)


def test_a_stopped_candidate_is_shown_as_a_lower_bound_everywhere():
    ranked = [_cand(Degrees(pipefusion=8), 1.0), _cand(Degrees(pipefusion=4), 1.5, stopped=True),
              _cand(Degrees(ulysses=4), 2.0)]
    explain_losses(ranked, "latency")
    assert ranked[1].latency_s == 1.5 and not ranked[1].simulated and ranked[1].stopped
    assert ranked[1].lost_because.startswith("at least 1.50× the best latency (simulation stopped at 1.5 s")
    report = search_report(SearchResult(ranked, [], 4.0), model="pixart-alpha", height_px=1024, width_px=1024,
                           steps=20, topology="pcie8", objective="latency", cost_model="analytic:l40")
    assert [latency_text(r) for r in report.candidates] == ["1", "≥ 1.5", "2"]
    assert [r.stopped for r in report.candidates] == [False, True, False]
    fastest = fastest_per_device_count(SearchResult(ranked, [], 4.0))
    assert fastest[4].plan.degrees.label() == "ulysses4"  # capacity never sizes a stopped plan


def test_the_report_marks_a_stopped_candidate():
    from planner.report_figures import pareto_figure, top_table

    ranked = [_cand(Degrees(pipefusion=8), 1.0), _cand(Degrees(pipefusion=4), 1.5, stopped=True)]
    explain_losses(ranked, "latency")
    report = search_report(SearchResult(ranked, [], 4.0), model="pixart-alpha", height_px=1024, width_px=1024,
                           steps=20, topology="pcie8", objective="latency", cost_model="analytic:l40")
    cells = top_table(report).data[0].cells.values
    assert "≥ 1.5" in [str(v) for column in cells for v in column]
    hover = [t for trace in pareto_figure(report).data for t in (trace.text or ())]
    assert any("stopped: latency at least this" in t for t in hover)
