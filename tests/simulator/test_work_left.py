"""The work a stage group has left (simulator.work_left): its closed form is the sum over the units,
it never exceeds what the run still takes, and a run it stops could not have ended under the limit."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from profiles.catalog.models import load_model
from profiles.costs.selection import cost_model_for
from profiles.topology.graph import load_cluster
from simulator.deadline import SlowerThan
from simulator.engine import SimSettings, Simulation, simulate
from simulator.plan import Degrees, ParallelPlan, violations
from simulator.work_left import WorkLeft


@pytest.fixture(scope="module")
def pcie8():
    model, cluster = load_model("pixart-alpha"), load_cluster("pcie8")
    return model, cluster, cost_model_for(model, cluster.gpu_of(cluster.devices[0]))


@pytest.fixture(scope="module")
def cpu2():
    """The shipped CPU profile: it prices what the analytic model leaves at 0 (first pass, VAE,
    scheduler, pass overheads) and a co-run slowdown, so every term of the bound is non-zero."""
    model, cluster = load_model("pixart-tiny"), load_cluster("cpu2")
    return model, cluster, cost_model_for(model, cluster.gpu_of(cluster.devices[0]), "pixart-tiny-cpu")


@st.composite
def plans(draw):
    degrees = {"cfg": draw(st.sampled_from([1, 2])), "pipefusion": draw(st.sampled_from([1, 2, 4])),
               "ulysses": draw(st.sampled_from([1, 2]))}
    steps = draw(st.integers(1, 12))
    return ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=steps, degrees=Degrees(**degrees),
                        patches=draw(st.sampled_from([1, 2, 4, 8])), warmup_steps=draw(st.integers(0, min(3, steps))))


@st.composite
def cpu_plans(draw):
    degrees = draw(st.sampled_from([{}, {"cfg": 2}, {"data": 2}, {"pipefusion": 2}, {"ulysses": 2}, {"ring": 2},
                                    {"tensor": 2}, {"distrifusion": 2}]))
    steps = draw(st.integers(1, 8))
    return ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=steps, degrees=Degrees(**degrees),
                        patches=draw(st.sampled_from([1, 2, 4])), warmup_steps=draw(st.integers(0, min(2, steps))))


def _work_left(pcie8, plan: ParallelPlan) -> tuple[Simulation, WorkLeft]:
    """A fresh simulation of ``plan`` (skipped by hypothesis when the plan breaks a rule) and its bound."""
    model, cluster, cost = pcie8
    assume(not violations(plan, model, cluster))
    sim = Simulation(plan, model, cluster, cost)
    return sim, WorkLeft(sim.work, sim.pass_cost, sim._bounds, compute_scale=sim.compute_scale,
                         first_pass_s=sim.first_pass_s(), vae_s=sim.vae_s() * sim.vae_scale)


def _brute_force(left: WorkLeft, actor, index: int) -> float:
    total = sum(left._unit_s(actor.stage, j) for j in range(index, left.units))
    if actor.stage == left.work.stages - 1 and actor.cfg == 0:
        total += left._vae_s
    return total


PROPERTY = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@PROPERTY
@given(plan=plans())
def test_the_closed_form_is_the_sum_over_the_units(pcie8, plan):
    sim, left = _work_left(pcie8, plan)
    for actor in sim.work.actors:
        for index in range(left.units):
            assert left.least_s(actor, index) == pytest.approx(_brute_force(left, actor, index), rel=1e-12, abs=1e-15)


@PROPERTY
@given(gpu_plan=plans(), cpu_plan=cpu_plans(), on_cpu=st.booleans(), record=st.booleans())
def test_at_every_step_start_the_work_left_ends_no_later_than_the_run(pcie8, cpu2, gpu_plan, cpu_plan, on_cpu,
                                                                      record):
    """Each stage group, at each of its step starts (where the engine checks), with and without a
    trace (the two ways a pass is timed): now + its work left <= the run's latency."""
    box, plan = (cpu2, cpu_plan) if on_cpu else (pcie8, gpu_plan)
    model, cluster, cost = box
    assume(not violations(plan, model, cluster))
    sim = Simulation(plan, model, cluster, cost, SimSettings(record=record))
    _, left = _work_left(box, plan)
    seen: list[tuple[float, str, int]] = []
    sim.check_work_left = lambda actor, index: seen.append(  # type: ignore[method-assign]
        (sim.env.now + left.least_s(actor, index), actor.label, index))
    latency = sim.run().latency_s
    assert seen and {label for _, label, _ in seen} == {a.label for a in sim.work.actors}
    worst = max(seen)
    assert worst[0] <= latency * (1 + 1e-9), worst


def test_a_compute_bound_pipeline_is_stopped_long_before_its_clock_reaches_the_limit(pcie8):
    """pixart-alpha pipefusion=4 on pcie8 is compute bound: the work left crosses a limit just
    under the latency in the first steps, where the clock alone would cross it in the last."""
    model, cluster, cost = pcie8
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=20, degrees={"pipefusion": 4},
                        patches=4, warmup_steps=1, placement=cluster.devices[:4])
    full = simulate(plan, model, cluster, cost, extrapolate=False)
    limit = 0.98 * full.latency_s
    sim = Simulation(plan, model, cluster, cost)
    sim.stop_after_s = limit
    with pytest.raises(SlowerThan) as stop:
        sim.run()
    assert limit <= stop.value.bound_s <= full.latency_s
    assert sim.env.now < 0.6 * full.latency_s  # stopped by the work left, not by the clock (which reads 0.98)


def test_without_a_limit_nothing_is_bounded(pcie8):
    model, cluster, cost = pcie8
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=4, degrees={"pipefusion": 2},
                        patches=2, warmup_steps=1, placement=cluster.devices[:2])
    sim = Simulation(plan, model, cluster, cost)
    sim.run()
    assert sim._work_left is None
