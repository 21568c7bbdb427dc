"""The search's simulations on several processes: the same answer as on one, errors raised as
themselves, and no worker left behind."""

from __future__ import annotations

import multiprocessing

import pytest

from benchmarks.search_scaling import copies
from planner.errors import PlannerError
from planner.search import SearchResult, SearchSettings, search
from profiles.catalog.models import load_model
from profiles.costs.selection import cost_model_for


def run(jobs: int, **settings) -> SearchResult:
    cluster, model = copies(2), load_model("pixart-alpha")
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    return search(model, cluster, cost, height_px=1024, width_px=1024, steps=20,
                  settings=SearchSettings(jobs=jobs, **settings))


def outline(result: SearchResult) -> list[tuple]:
    return [(c.plan.degrees.label(), c.plan.patches, c.placement_name, tuple(c.plan.placement or ()),
             c.prediction.model_dump() if c.prediction else None, c.stopped_at_s,
             c.estimate_s) for c in result.ranked]


@pytest.fixture(scope="module")
def serial() -> SearchResult:
    return run(1)


def test_two_processes_give_the_serial_answer(serial: SearchResult):
    assert serial.counts["stopped"] > 0  # shapes of the second wave stopped at the first wave's limits
    parallel = run(2)
    assert outline(parallel) == outline(serial)
    assert parallel.counts == serial.counts
    assert [(r.plan.degrees.label(), r.reason) for r in parallel.rejected] == \
        [(r.plan.degrees.label(), r.reason) for r in serial.rejected]
    assert multiprocessing.active_children() == []


def in_a_worker() -> bool:
    return multiprocessing.parent_process() is not None


def test_a_worker_error_is_raised_as_itself(monkeypatch: pytest.MonkeyPatch):
    import planner.simulated

    real = planner.simulated.simulate_prediction

    def broken(*args, **kwargs):
        if in_a_worker():  # the parent's own runs (the serial baseline) succeed: the error is a worker's
            raise PlannerError("no simulation today", field="--profile")
        return real(*args, **kwargs)
    monkeypatch.setattr(planner.simulated, "simulate_prediction", broken)  # the forked workers inherit it
    with pytest.raises(PlannerError, match="no simulation today") as caught:
        run(2)
    assert caught.value.field == "--profile"
    assert multiprocessing.active_children() == []


def test_an_error_that_does_not_pickle_comes_back_as_its_traceback(monkeypatch: pytest.MonkeyPatch):
    import planner.simulated

    class Local(Exception):  # a class defined in a function does not pickle
        pass
    real = planner.simulated.simulate_prediction

    def broken(*args, **kwargs):
        if in_a_worker():
            raise Local("a local failure")
        return real(*args, **kwargs)
    monkeypatch.setattr(planner.simulated, "simulate_prediction", broken)
    with pytest.raises(RuntimeError, match="a local failure"):
        run(2)
    assert multiprocessing.active_children() == []


def test_exhaustive_search_is_the_same_on_two_processes():
    assert outline(run(2, exhaustive=True, simulate_top=6)) == outline(run(1, exhaustive=True, simulate_top=6))


def test_a_worker_warning_reaches_the_parent(monkeypatch: pytest.MonkeyPatch):
    import warnings

    import planner.simulated

    real = planner.simulated.simulate_prediction

    def warns(*args, **kwargs):
        if in_a_worker():  # only in a worker: the parent's own runs do not warn
            warnings.warn("a shape outside the profile", UserWarning)
        return real(*args, **kwargs)
    monkeypatch.setattr(planner.simulated, "simulate_prediction", warns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(2, simulate_top=2)
    assert any("a shape outside the profile" in str(w.message) for w in caught)


def test_alternatives_run_best_estimate_first_and_the_fastest_is_kept():
    """The order saves work only; a shape below placement_top runs greedy, listed first, whatever its
    estimate (the estimate misses contention and can prefer a placement that simulates slower)."""
    from planner.search import Candidate, _Pricer
    from planner.simulate_chosen import simulate_shape
    from profiles.costs.selection import dtype_bytes_of
    from profiles.topology.graph import load_cluster
    from simulator.engine import simulate
    from simulator.plan import ParallelPlan

    cluster, model = load_cluster("l40-2node"), load_model("flux-dev")
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    pricer = _Pricer(model, cluster, cost, dtype_bytes_of(cost), memoise=True)
    shape = ParallelPlan(model="flux-dev", height_px=4096, width_px=4096, steps=28,
                         degrees={"pipefusion": 8, "ulysses": 2}, patches=8, warmup_steps=1)
    variants = pricer.prepare(shape)
    estimates = [pricer.estimate(plan) for plan, _ in variants]
    assert min(range(len(variants)), key=lambda i: (estimates[i], i)) != 0  # greedy is not run first here
    first = Candidate(variants[0][0], variants[0][1].name, estimates[0], 0, 1, variants[0][0].placement[0], None)
    below = simulate_shape(pricer, SearchSettings(placement_top=0), 0, first, shape, None)
    assert below.best.placement_name == variants[0][1].name == "greedy"
    every = simulate_shape(pricer, SearchSettings(placement_top=1), 0, first, shape, None)
    latencies = [simulate(plan, model, cluster, cost).latency_s for plan, _ in variants]
    fastest = min(range(len(variants)), key=lambda i: (latencies[i], i))
    assert every.best.placement_name == variants[fastest][1].name
    assert every.best.latency_s == latencies[fastest]


def test_one_warning_key_is_reported_once_however_many_workers_raise_it(monkeypatch: pytest.MonkeyPatch):
    import warnings

    import planner.simulated
    from profiles.costs.profiled import ProfileRangeWarning

    real = planner.simulated.simulate_prediction

    def warns(*args, **kwargs):
        if in_a_worker():  # every run of every worker: a worker's own once-per-key memory is not the parent's
            warnings.warn(ProfileRangeWarning("embed outside the measured range", key=("p.json", "embed")))
        return real(*args, **kwargs)
    monkeypatch.setattr(planner.simulated, "simulate_prediction", warns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(2, simulate_top=4)
    assert sum("embed outside the measured range" in str(w.message) for w in caught) == 1


def test_a_wave_is_handed_out_costliest_first_and_read_back_in_its_order():
    """Longest first: the shape with the most placements × devices × patches starts first; outcomes come back
    in the wave's order, whatever order the workers ran them in."""
    from types import SimpleNamespace

    from planner.simulate_chosen import ShapeOutcome, _costliest_first
    from simulator.plan import ParallelPlan

    def shape(degrees: dict, patches: int) -> ParallelPlan:
        return ParallelPlan(model="flux-dev", height_px=4096, width_px=4096, steps=28, degrees=degrees,
                            patches=patches, warmup_steps=1)

    shapes = [shape({"pipefusion": 8}, 8), shape({"pipefusion": 20, "ulysses": 24}, 20),
              shape({"data": 4, "pipefusion": 4}, 4), shape({"pipefusion": 20, "ring": 2, "ulysses": 12}, 20)]
    placements = {0: 2, 1: 2, 2: 2, 3: 3}
    pricer = SimpleNamespace(prepare=lambda s: [None] * placements[shapes.index(s)])
    settings = SimpleNamespace(placement_top=3)  # the fourth runs only its first placement
    handed: list[int] = []

    class Pool:
        def imap(self, work, tasks):
            for task in tasks:
                handed.append(task[0])
            return [ShapeOutcome(runs_stopped=task[0]) for task in reversed(tasks)][::-1]

    counts: list[int] = []
    tasks = [(i, None, s, None) for i, s in enumerate(shapes)]
    outcomes = _costliest_first(Pool(), tasks, pricer, settings, counts.append)
    # costs: 2·8·8, 2·480·20, 2·4·4 (one replica of data 4), 1·480·20
    assert handed == [1, 3, 0, 2]
    assert [o.runs_stopped for o in outcomes] == [0, 1, 2, 3] and counts == [1, 2, 3, 4]
