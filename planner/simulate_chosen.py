"""Simulate the search's chosen shapes, in fixed waves, on one process or several.

Why: on a cluster of 64 GPUs and more, nearly all of a search's time is the event simulation of
its ten or so best-estimated shapes, and each simulation is independent of the others except
for the bar a shape must beat (:class:`planner.stopping.StopLimits`). A user's planning box
has cores to spare, so the shapes of one wave run side by side.

The answer must not depend on how many processes ran it, so the bar is frozen per wave:
the chosen shapes, best estimate first, are cut into waves of ``exact_top`` (K) shapes; every
shape of a wave is simulated against the limits set by the shapes of the waves before it,
and only then are the wave's finished shapes counted. The first wave (the best K by estimate)
has no bar at all, as before. With ``jobs=1`` the same waves run in this process, so the
ranking, every finished number and which shapes were stopped are the same for any ``jobs``
(tests/planner/test_simulate_chosen.py). Placement alternatives of one shape stay in one
process, best estimate first: each later one stops once it passes the best one so far.

Workers are forked (they inherit the model, cluster and price caches; nothing is pickled but
the shapes and the results; a spawned worker would spend ~0.7 s importing) and are always joined
or terminated before :func:`simulate_chosen` returns. Known limit: a worker killed from outside
(the OOM killer) leaves ``multiprocessing.Pool`` waiting for its answer, so the search hangs until
Ctrl-C; ``concurrent.futures`` would raise instead, but with it, on Python 3.11, a clean shutdown
after a SIGTERM hung in CI, and an error left a worker unreaped in one test run of three. A forked child of a process with threads
(the CLI's progress bar) must not touch a lock another thread may have held: the workers write
nothing, their errors and warnings come back as values for the parent to raise or report. Where
``fork`` is not available the waves run in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import traceback
import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Literal, Protocol

from planner import simulated
from planner import stopping
from planner.stopping import MARGIN, StopLimits
from profiles.catalog.models import ModelPreset
from profiles.costs.cost_model import CostModel
from profiles.topology.graph import ClusterGraph
from simulator.plan import ParallelPlan

if TYPE_CHECKING:
    from planner.placement import Placement


class Candidate(stopping.Candidate, Protocol):
    """What a shape's runs read of a search candidate (:class:`planner.search.Candidate`, a dataclass
    they copy with :func:`dataclasses.replace`; :mod:`planner.search` imports this module, so it is
    named by its shape)."""

    estimate_s: float


class Pricer(Protocol):
    """The search's per-plan prices (:class:`planner.search._Pricer`)."""

    model: ModelPreset
    cluster: ClusterGraph
    cost_model: CostModel
    dtype_bytes: int

    def prepare(self, shape: ParallelPlan) -> list[tuple[ParallelPlan, Placement]]: ...
    def estimate(self, plan: ParallelPlan) -> float: ...


class Settings(Protocol):
    """What the runs read of :class:`planner.search.SearchSettings`."""

    objective: Literal["latency", "throughput"]
    exhaustive: bool
    exact_top: int | None
    best_per_device_count: bool
    placement_top: int
    jobs: int


Progress = Callable[[str, int, int], None]


@dataclass
class ShapeOutcome:
    """What simulating one chosen shape under its placement alternatives gave."""

    best: Candidate | None = None
    """The fastest placement simulated to the end."""
    stopped: Candidate | None = None
    """Set when no placement finished (each stopped at the shape's limit): the first run, with its lower bound."""
    rejected: list[tuple[ParallelPlan, str]] = field(default_factory=list)
    runs_stopped: int = 0
    warnings: list[tuple[type[Warning], str, tuple | None]] = field(default_factory=list)
    """Warnings a worker's simulations raised (category, text, dedupe key), to be raised again in the
    parent, which reports them; one key is reported once, however many workers raised it."""


def simulate_shape(pricer: Pricer, settings: Settings, index: int, candidate: Candidate,
                   shape: ParallelPlan, shape_limit: float | None) -> ShapeOutcome:
    """Simulate ``shape`` (the ``index``-th chosen) under its placement alternatives; keep the fastest.

    A shape ranked at or below ``placement_top`` runs only the first listed (``greedy``). The others run
    every alternative, best closed-form estimate first (ties in their listed order), so that where the
    estimate is right the slower ones stop early; it is not trusted to choose: it misses contention
    (pixart-alpha 2048 px, cfg2×pipefusion16×ulysses2 on 64 L40s: ``reversed`` 1.439 s against
    ``greedy`` 1.453 s estimated, 1.677 s against 1.480 s simulated). A later run stops once its clock
    passes the best latency so far by a hair (:data:`MARGIN`); a tie goes to the alternative listed
    first. The first run stops at ``shape_limit``.
    """
    from simulator.deadline import SlowerThan

    outcome = ShapeOutcome()
    variants = pricer.prepare(shape)
    if index >= settings.placement_top:
        variants = variants[:1]
    estimates = [pricer.estimate(plan) if len(variants) > 1 else candidate.estimate_s for plan, _ in variants]
    order = sorted(range(len(variants)), key=lambda i: (estimates[i], i))
    best_rank: tuple | None = None
    for i in order:
        plan, placement = variants[i]
        limit = outcome.best.latency_s * (1 + MARGIN) if outcome.best is not None else shape_limit
        try:
            prediction, why = simulated.simulate_prediction(
                plan, pricer.model, pricer.cluster, pricer.cost_model, pricer.dtype_bytes,
                stop_after_s=None if settings.exhaustive else limit)
        except SlowerThan as stop:
            outcome.runs_stopped += 1
            if outcome.best is None and outcome.stopped is None:
                outcome.stopped = replace(candidate, plan=plan, placement_name=placement.name,
                                          estimate_s=estimates[i], stopped_at_s=stop.bound_s)
            continue
        if prediction is None:
            outcome.rejected.append((plan, f"{why} (simulated, {placement.name} placement)"))
            continue
        trial = replace(candidate, plan=plan.model_copy(update={"prediction": prediction}),
                        placement_name=placement.name, estimate_s=estimates[i], prediction=prediction)
        rank = (trial.objective_key(settings.objective), i)
        if best_rank is None or rank < best_rank:
            outcome.best, best_rank = trial, rank
    return outcome


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_WORK: tuple[Pricer, Settings] | None = None
"""The pricer and settings the forked workers read (set by the parent just before it forks)."""


def _worker_init() -> None:
    """Ctrl-C and SIGTERM are the parent's to handle: it ends the workers on its way out, and a worker
    that writes a result into a pipe the parent has closed ends quietly (SIGPIPE), not with a traceback
    under the parent's one-line message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # a worker writes nothing, and its exit flushes sys.stdout and sys.stderr: fresh ones, so that no lock
    # another thread of the parent held at the fork (the progress bar's) can stop it
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def _work(args: tuple[int, Candidate, ParallelPlan, float | None]) -> ShapeOutcome | BaseException:
    """One shape in a worker; an error comes back as a value, as itself when it survives pickling."""
    assert _WORK is not None, "a worker forked without its search"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            outcome = simulate_shape(*_WORK, *args)
        outcome.warnings = [(w.category, str(w.message), getattr(w.message, "key", None)) for w in caught]
        return outcome
    except Exception as error:  # noqa: BLE001 - handed to the parent, which raises it
        try:
            return pickle.loads(pickle.dumps(error))
        except Exception:  # noqa: BLE001 - an exception whose class does not pickle
            return RuntimeError(f"simulating {args[2].degrees.label()} in a search worker: "
                                f"{''.join(traceback.format_exception(error)).strip()}")


def _expected_cost(pricer: Pricer, settings: Settings, index: int, shape: ParallelPlan) -> int:
    """A rough size of one shape's task: the placements it runs × devices of one replica × patches (the
    transfers a step starts grow with the devices, the steps' units with the patches)."""
    runs = len(pricer.prepare(shape)) if index < settings.placement_top else 1
    replica = shape.degrees.model_copy(update={"data": 1}).world_size()
    return runs * replica * max(shape.patches, 1)


def _costliest_first(pool, tasks: list, pricer: Pricer, settings: Settings,
                     arrived: Callable[[int], None]) -> list[ShapeOutcome]:
    """One wave's outcomes in the tasks' order, the tasks handed to the workers costliest first.

    Why: a wave's runs are independent (each against the limits of the waves before), so the order they
    run in changes no answer, only when the wave ends; in order of the estimate, the costliest shape of a
    512-GPU wave started last and ran alone at the end (flux-dev 4096 px: 98 s of the wave's 234 s CPU,
    on 2 processes). Longest first is the classic list-scheduling remedy. ``arrived(k)`` is called as the
    ``k``-th outcome comes back (the progress bar); a worker's error is raised as soon as it arrives."""
    order = sorted(range(len(tasks)), key=lambda j: -_expected_cost(pricer, settings, tasks[j][0], tasks[j][2]))
    outcomes: dict[int, ShapeOutcome] = {}
    for j, outcome in zip(order, pool.imap(_work, [tasks[j] for j in order])):
        if isinstance(outcome, BaseException):
            raise outcome
        outcomes[j] = outcome
        arrived(len(outcomes))
    return [outcomes[j] for j in range(len(tasks))]


def simulate_chosen(chosen: list[tuple[Candidate, ParallelPlan]], pricer: Pricer, settings: Settings,
                    counts: dict[str, int], report: Progress) -> tuple[list[Candidate], list[tuple[ParallelPlan, str]]]:
    """Each chosen shape's fastest finished placement (or its stopped lower bound), in ``chosen``'s
    order, and the (plan, reason) of every placement the simulation rejected."""
    global _WORK

    exact_top = None if settings.exhaustive else settings.exact_top
    limits = StopLimits(settings.objective, exact_top, settings.best_per_device_count)
    wave = max(1, exact_top or len(chosen))
    counts.update(stopped=0, runs_stopped=0)
    ranked: list[Candidate] = []
    rejected: list[tuple[ParallelPlan, str]] = []
    warned: set[tuple] = set()
    jobs = min(settings.jobs, wave, len(chosen))
    pool = None
    try:
        if jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
            _WORK = (pricer, settings)
            pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_worker_init)
        done = 0
        report("simulating", done, len(chosen))
        for start in range(0, len(chosen), wave):
            tasks = [(i, cand, shape, limits.limit_s(cand))
                     for i, (cand, shape) in enumerate(chosen[start:start + wave], start)]
            if pool is not None:
                results = _costliest_first(pool, tasks, pricer, settings,
                                           lambda k: report("simulating", done + k, len(chosen)))
            else:
                results = (simulate_shape(pricer, settings, *task) for task in tasks)
            finished = []
            for outcome in results:
                if isinstance(outcome, BaseException):
                    raise outcome
                for category, message, key in outcome.warnings:
                    if key is not None:
                        if key in warned:
                            continue
                        warned.add(key)
                    warnings.warn(message, category, stacklevel=2)
                done += 1
                if pool is None:
                    report("simulating", done, len(chosen))
                counts["runs_stopped"] += outcome.runs_stopped
                rejected += outcome.rejected
                if outcome.best is not None:
                    ranked.append(outcome.best)
                    finished.append(outcome.best)
                elif outcome.stopped is not None:
                    ranked.append(outcome.stopped)
                    counts["stopped"] += 1
            for cand in finished:  # the next wave's bar: only now, so no shape of this wave saw another's
                limits.add(cand)
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        if pool is not None:
            pool.terminate()  # on an error or Ctrl-C; after a clean join it has nothing left to end
            pool.join()
        _WORK = None
    return ranked, rejected
