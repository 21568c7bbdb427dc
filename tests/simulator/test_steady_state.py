"""A run stopped at its steady state (simulator.periodic) equals the whole simulation, on random plans."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from profiles.catalog.models import load_model
from profiles.costs.selection import cost_model_for
from profiles.topology.graph import load_cluster
from simulator.engine import Simulation, simulate
from simulator.plan import Degrees, ParallelPlan, parse_parallel_spec, violations
from tests.simulator.test_properties import MODELS, PROPERTY, TOPOLOGIES, cluster, model, run


def assert_same(short, whole):
    assert short.latency_s == pytest.approx(whole.latency_s, rel=1e-9)
    for key, value in whole.prediction.breakdown_s.items():  # parts of the latency, to 1e-9 of it (bubble is a difference)
        assert short.prediction.breakdown_s[key] == pytest.approx(value, rel=1e-9, abs=1e-9 * whole.latency_s), key
    assert short.prediction.bytes_by_route_class == whole.prediction.bytes_by_route_class
    assert short.traffic.transfers == whole.traffic.transfers
    assert short.traffic.by_link == whole.traffic.by_link
    assert short.utilisation == pytest.approx(whole.utilisation, rel=1e-9)


@st.composite
def long_scenarios(draw):
    topo = draw(st.sampled_from(TOPOLOGIES))
    name = draw(st.sampled_from(MODELS))
    steps = draw(st.integers(4, 24))
    degrees = {"data": draw(st.sampled_from([1, 2])), "cfg": draw(st.sampled_from([1, 2])),
               "pipefusion": draw(st.sampled_from([1, 2, 4, 8])), "ulysses": draw(st.sampled_from([1, 2])),
               "ring": draw(st.sampled_from([1, 2]))}
    if draw(st.booleans()):
        degrees = {"data": degrees["data"], "cfg": degrees["cfg"],
                   draw(st.sampled_from(["distrifusion", "tensor"])): draw(st.sampled_from([2, 4]))}
    plan = ParallelPlan(model=name, height_px=512, width_px=draw(st.sampled_from([512, 1024])), steps=steps,
                        degrees=Degrees(**degrees), patches=draw(st.sampled_from([1, 2, 4, 8, 16])),
                        warmup_steps=draw(st.integers(0, 3)))
    assume(not violations(plan, model(name), cluster(topo)))
    if draw(st.booleans()):  # a random placement: other contention patterns
        devices = draw(st.permutations(cluster(topo).devices))[:plan.world_size]
        plan = plan.model_copy(update={"placement": list(devices)})
    return plan, topo


@st.composite
def deep_scenarios(draw):
    """Deep PipeFusion pipelines with as many patches as stages (S = M >= 8), the shapes a large search
    simulates: their downstream stages take the longest to settle, if they settle at all."""
    topo = draw(st.sampled_from(("pcie8", "a100-nvlink8", "l40-2node")))
    name = draw(st.sampled_from(MODELS))
    stages = draw(st.sampled_from([8, 16]))
    plan = ParallelPlan(model=name, height_px=512, width_px=draw(st.sampled_from([512, 1024])),
                        steps=draw(st.integers(6, 14)),
                        degrees=Degrees(pipefusion=stages, ulysses=draw(st.sampled_from([1, 2]))),
                        patches=stages, warmup_steps=draw(st.integers(1, 2)))
    assume(not violations(plan, model(name), cluster(topo)))
    if draw(st.booleans()):
        devices = draw(st.permutations(cluster(topo).devices))[:plan.world_size]
        plan = plan.model_copy(update={"placement": list(devices)})
    return plan, topo


def pixart_on_pcie8():
    """pixart-alpha, pcie8 and its GPU's shipped cost model."""
    m, c = load_model("pixart-alpha"), load_cluster("pcie8")
    return m, c, cost_model_for(m, c.gpu_of(c.devices[0]))


@PROPERTY
@given(long_scenarios())
def test_a_run_stopped_at_its_steady_state_equals_the_whole_simulation(scenario):
    plan, topo = scenario
    assert_same(run(plan, topo), run(plan, topo, extrapolate=False))


@PROPERTY
@given(deep_scenarios())
def test_a_deep_pipeline_stopped_at_its_steady_state_equals_the_whole_simulation(scenario):
    plan, topo = scenario
    assert_same(run(plan, topo), run(plan, topo, extrapolate=False))


@pytest.mark.parametrize("px, spec, settles_by", [(512, "pipefusion=16,patches=16,warmup=2", 5),
                                                   (1024, "pipefusion=8,ulysses=2,patches=8,warmup=1", 4)])
def test_a_deep_pipeline_on_two_nodes_is_cut_and_equals_the_whole_simulation(px, spec, settles_by):
    """pixart-alpha on l40-2node with S = M (16, and 8 stages of two Ulysses ranks): the cut fires, at the
    step the diagnosis found (simulator/periodic.py), and the result is the whole run's."""
    m, c = load_model("pixart-alpha"), load_cluster("l40-2node")
    cost = cost_model_for(m, c.gpu_of(c.devices[0]))
    plan = ParallelPlan(model="pixart-alpha", height_px=px, width_px=px, steps=20, **parse_parallel_spec(spec))
    sim = Simulation(plan, m, c, cost, watch=True)
    short = sim.run()
    assert sim.watch is not None and sim.watch.found is not None and sim.watch.stopped_at_steps == settles_by
    assert_same(short, simulate(plan, m, c, cost, extrapolate=False))


def test_a_search_sized_run_stops_early_and_equals_the_whole_simulation():
    """pixart-alpha 1024 px, 20 steps, pipefusion=8 M=8 on pcie8 settles after step 2: 4 steps are simulated."""
    m, c, cost = pixart_on_pcie8()
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=20,
                        degrees={"pipefusion": 8}, patches=8, warmup_steps=1)
    sim = Simulation(plan, m, c, cost, watch=True)
    short = sim.run()
    assert sim.watch is not None and sim.watch.stopped_at_steps == 4
    assert sim.unit_count == 1 + 3 * 8
    assert_same(short, simulate(plan, m, c, cost, extrapolate=False))


def test_a_trace_is_never_cut_short():
    m, c, cost = pixart_on_pcie8()
    plan = ParallelPlan(model="pixart-alpha", height_px=512, width_px=512, steps=12,
                        degrees={"pipefusion": 4}, patches=4, warmup_steps=1)
    traced = simulate(plan, m, c, cost, record_trace=True)
    assert {e.step for e in traced.events} - {None} == set(range(12))
    assert_same(traced, simulate(plan, m, c, cost, extrapolate=False))
    assert traced.latency_s == pytest.approx(simulate(plan, m, c, cost).latency_s, rel=1e-9)


def test_the_fifo_network_is_simulated_whole():
    m, c, cost = pixart_on_pcie8()
    plan = ParallelPlan(model="pixart-alpha", height_px=512, width_px=512, steps=10,
                        degrees={"pipefusion": 4}, patches=4, warmup_steps=1)
    from simulator.engine import SimSettings

    assert Simulation(plan, m, c, cost, SimSettings(network_model="fifo"), watch=True).watch is None


@pytest.mark.parametrize("steps, warmup, rows", [(3, 1, [2, 2]), (5, 0, [3, 3, 2]), (4, 4, [1, 1]), (6, 2, [8]),
                                                 (2, 5, [2, 2])])
def test_the_lazy_schedule_is_the_listed_one(steps, warmup, rows):
    from simulator.schedule import row_bounds, unit_at, unit_count, units

    listed = units(steps, warmup, rows)
    warm = min(warmup, steps)
    assert unit_count(steps, warm, len(rows)) == len(listed)
    assert [unit_at(i, warm, row_bounds(rows)) for i in range(len(listed))] == listed


def test_a_run_that_does_not_settle_says_where_its_step_starts_differ():
    """pixart-alpha 1024 px pipefusion=16 M=16 on l40-2node: a stage group's slack shrinks every step
    (a genuine transient, simulator/periodic.py), so it is never cut; difference() names that group."""
    from simulator.periodic import Snapshot, StepWatch, difference

    m, c = load_model("pixart-alpha"), load_cluster("l40-2node")
    cost = cost_model_for(m, c.gpu_of(c.devices[0]))
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=8,
                        degrees={"pipefusion": 16}, patches=16, warmup_steps=1)
    sim = Simulation(plan, m, c, cost, watch=True)
    snaps: list[Snapshot] = []
    watch = StepWatch(sim)

    class Recorder:
        found = None

        def step_began(self, step: int, index: int) -> None:
            snap = watch._snapshot(step, index)
            if snap is not None:
                snaps.append(snap)

    sim.watch = Recorder()  # type: ignore[assignment]
    sim.run()
    assert [s.step for s in snaps] == [2, 3, 4, 5, 6, 7]
    said = [difference(a, b) for a, b in zip(snaps, snaps[1:])]
    assert all(s is not None for s in said)
    assert said[1].startswith("actors[4] (d0c0s4)[2][2]: ")  # its wait began at another time in the step
    assert difference(snaps[-1], snaps[-1]) is None


@PROPERTY
@given(st.one_of(deep_scenarios(), long_scenarios()), st.floats(min_value=0.3, max_value=0.999))
def test_a_limited_run_stopped_at_its_steady_state_could_not_have_ended_under_the_limit(scenario, fraction):
    """The bound a steady state gives a run with a limit (the last step's start and the work left from there)
    never exceeds the latency: deep pipelines, and plans with data and CFG replicas, Ring and Ulysses, random
    placements."""
    from simulator.deadline import SlowerThan

    plan, topo = scenario
    latency = run(plan, topo, extrapolate=False).latency_s
    limit = fraction * latency
    try:
        finished = run(plan, topo, stop_after_s=limit)
    except SlowerThan as stop:
        assert limit <= stop.bound_s <= latency * (1 + 1e-9)
    else:  # a cut run may end before its clock reaches the limit: then it is the whole run's answer
        assert finished.latency_s == pytest.approx(latency, rel=1e-9)


def test_a_run_that_settles_past_its_limit_stops_at_that_step_start():
    """pixart-alpha 1024 px pipefusion=8 ulysses=2 M=8 on l40-2node settles at step 8 of its 20 (0.25 of its 0.60 s)
    steps; with a limit 5 % under its latency the run stops there, bounded by the last step's start and the
    work left from there, not at the end of its cut run (its last steps and the drain)."""
    from simulator.deadline import SlowerThan

    m, c = load_model("pixart-alpha"), load_cluster("l40-2node")
    cost = cost_model_for(m, c.gpu_of(c.devices[0]))
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=20,
                        **parse_parallel_spec("pipefusion=8,ulysses=2,patches=8,warmup=1"))
    whole = simulate(plan, m, c, cost, extrapolate=False).latency_s
    sim = Simulation(plan, m, c, cost, watch=True)
    sim.stop_after_s = 0.95 * whole
    with pytest.raises(SlowerThan) as stop:
        sim.run()
    before, settled = sim.watch.found
    assert sim.env.now == settled.now < 0.5 * whole
    period = settled.now - before.now
    assert stop.value.bound_s >= settled.now + (20 - 1 - settled.step) * period  # the last step start, and then its work
    assert 0.95 * whole <= stop.value.bound_s <= whole
