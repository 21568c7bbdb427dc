"""Fit a topology's communication efficiencies to measured runs (``pfplan topology calibrate``).

Two numbers say how far a box's software falls short of its links
(:class:`profiles.topology.format.Communication`): the achieved share of link bandwidth, and the
share of an "overlapped" transfer's time that really runs beside compute. They are fitted
one after the other, each on the runs that can see it, by minimising the squared log error
of the simulated latencies:

1. ``bandwidth_efficiency`` on runs whose traffic is all blocking (tensor, Ulysses, CFG):
   their time is compute plus transfers, nothing hides, so only bandwidth can explain them;
2. ``overlap_efficiency``, with that bandwidth, on runs with overlapped traffic
   (stale K/V gathered behind compute, K/V passed around a ring, pipeline sends).

Which runs see which number is decided by simulation, not by the plan's degrees: a run
whose prediction does not move when overlap is switched off is not used for the overlap.
Runs that see neither (serial, data parallel) fit nothing; they show whether the compute
profile agrees with the box, which the fit assumes (calibrate the profile first:
``pfplan profile calibrate``). A number with no run that can see it keeps its old value
and its old source. Values that fit equally well are reported as a range (warning).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Literal

from profiles.costs.cost_model import CostModel
from profiles.costs.selection import dtype_bytes_of
from profiles.errors import InputError
from profiles.catalog.measured_runs import MeasuredRun, MeasuredRuns
from profiles.catalog.models import ModelPreset
from profiles.topology.format import Communication, Topology
from profiles.topology.graph import ClusterGraph
from simulator.engine import simulate
from simulator.plan import ParallelPlan, plan_from_spec, validate

RunKind = Literal["compute", "blocking", "overlapped"]
SENSITIVE = 1e-3
"""A run sees a parameter when moving it from ideal to its test value changes the prediction by more."""
BANDWIDTH_RANGE = (0.02, 1.0)
OVERLAP_RANGE = (0.0, 1.0)


class CalibrationWarning(UserWarning):
    """A fitted value the runs do not pin down (printed as one ``pfplan: warning:`` line)."""


@dataclass
class RunCheck:
    """One measured run against the simulation before and after calibration."""

    run: MeasuredRun
    kind: RunKind
    before_s: float
    after_s: float = 0.0


@dataclass
class TopologyCalibration:
    """What the fit found; ``fitted`` names the efficiencies some run could see, ``ties`` the
    ranges of values that fit the runs equally well (the value kept is the highest)."""

    communication: Communication
    previous: Communication
    fitted: list[str]
    checks: list[RunCheck] = field(default_factory=list)
    ties: dict[str, tuple[float, float]] = field(default_factory=dict)

    def rms_log_error(self, after: bool, kinds: tuple[RunKind, ...] = ("blocking", "overlapped")) -> float:
        errs = [math.log((c.after_s if after else c.before_s) / c.run.latency_s) for c in self.checks
                if c.kind in kinds]
        return math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else 0.0


def run_plan(run: MeasuredRun, index: int, model: ModelPreset, cluster: ClusterGraph, file: str) -> ParallelPlan:
    """The plan a measured run describes, checked against the model and topology."""
    where = f"runs[{index}]"
    plan = plan_from_spec(model.name, run.parallel, height_px=run.resolution, width_px=run.resolution,
                          steps=run.steps, file=file, field=f"{where}.parallel")
    validate(plan, model, cluster, file=f"{file} {where}")
    return plan


def classify(ideal: list[float], slow_links: list[float], no_overlap: list[float]) -> list[RunKind]:
    """Which parameter each run can see, from how its prediction moves (not from its degrees:
    a one-step run of a stale strategy has nothing to overlap, a PipeFusion run with W = T neither)."""
    kinds: list[RunKind] = []
    for base, slow, serial in zip(ideal, slow_links, no_overlap):
        if abs(serial - base) > SENSITIVE * base:
            kinds.append("overlapped")
        elif abs(slow - base) > SENSITIVE * base:
            kinds.append("blocking")
        else:
            kinds.append("compute")
    return kinds


def best_on_grid(error_of: Callable[[float], float], lo: float, hi: float,
                 steps: int = 20) -> tuple[float, tuple[float, float]]:
    """Minimise ``error_of`` on [lo, hi]: a coarse grid, then a 10× finer one around the best point.

    Returns the best value and the range of fine-grid values whose error ties with it; on
    a tie the highest value wins (assume no worse communication than the runs show).
    """
    def tol(least: float) -> float:
        return least + 1e-9 * max(1.0, least)

    coarse = {lo + i * (hi - lo) / steps: 0.0 for i in range(steps + 1)}
    for x in coarse:
        coarse[x] = error_of(x)
    least = min(coarse.values())
    tied_coarse = [x for x, e in coarse.items() if e <= tol(least)]
    step = (hi - lo) / steps / 10
    fine = {round(c + j * step, 12) for c in (min(tied_coarse), max(tied_coarse)) for j in range(-10, 11)}
    errors = {x: error_of(x) for x in fine if lo - 1e-12 <= x <= hi + 1e-12}
    least = min(errors.values())
    tied = [x for x, e in errors.items() if e <= tol(least)]
    return round(max(tied), 4), (round(min(tied), 4), round(max(tied), 4))


def calibrate_topology(topology: Topology, model: ModelPreset, cost_model: CostModel, measured: MeasuredRuns, *,
                       file: str, source: str) -> TopologyCalibration:
    """Fit the topology's :class:`Communication` to ``measured``; see the module docstring."""
    if measured.model != model.name:
        raise InputError(f"the runs are of {measured.model!r}, not {model.name!r}", file=file, field="model")
    dtype = dtype_bytes_of(cost_model)
    base = ClusterGraph(topology)
    plans = [run_plan(run, i, model, base, file) for i, run in enumerate(measured.runs)]
    cache: dict[tuple[float, float], list[float]] = {}

    def predicted(bandwidth: float, overlap: float) -> list[float]:
        key = (bandwidth, overlap)
        if key not in cache:
            comm = Communication(bandwidth_efficiency=bandwidth, overlap_efficiency=overlap)
            cluster = ClusterGraph(topology.model_copy(update={"communication": comm}))
            cache[key] = [simulate(plan, model, cluster, cost_model, dtype_bytes=dtype).latency_s for plan in plans]
        return cache[key]

    kinds = classify(predicted(1.0, 1.0), predicted(0.5, 1.0), predicted(1.0, 0.0))

    def error(values: list[float], kind: RunKind) -> float:
        return sum(math.log(v / run.latency_s) ** 2
                   for v, run, k in zip(values, measured.runs, kinds) if k == kind)

    previous = topology.communication
    bandwidth, overlap = previous.bandwidth_efficiency, previous.overlap_efficiency
    fitted: list[str] = []
    ties: dict[str, tuple[float, float]] = {}
    if "blocking" in kinds:
        bandwidth, ties["bandwidth_efficiency"] = best_on_grid(
            lambda b: error(predicted(b, overlap), "blocking"), *BANDWIDTH_RANGE)
        fitted.append("bandwidth_efficiency")
        if bandwidth in BANDWIDTH_RANGE:
            side = "top" if bandwidth == BANDWIDTH_RANGE[1] else "bottom"
            warnings.warn(CalibrationWarning(
                f"{file}: bandwidth_efficiency hit the {side} of its range ({bandwidth:g}): the runs are "
                f"{'as fast as ideal links or faster' if side == 'top' else 'slower than any plausible link'}; "
                "check the compute profile (pfplan profile calibrate) and the runs"))
    if "overlapped" in kinds:
        overlap, ties["overlap_efficiency"] = best_on_grid(
            lambda o: error(predicted(bandwidth, o), "overlapped"), *OVERLAP_RANGE)
        fitted.append("overlap_efficiency")
    if not fitted:
        raise InputError("no run's latency depends on the communication (serial, data parallel, or nothing to "
                         "overlap): nothing to fit", file=file, field="runs")
    for name, (lo, hi) in ties.items():
        if hi - lo > 1e-9:
            warnings.warn(CalibrationWarning(f"{file}: every {name} in [{lo:g}, {hi:g}] fits these runs equally; "
                                             f"kept {hi:g}"))
    before = predicted(previous.bandwidth_efficiency, previous.overlap_efficiency)
    after = predicted(bandwidth, overlap)
    checks = [RunCheck(run, kind, b, a) for run, kind, b, a in zip(measured.runs, kinds, before, after)]
    result = TopologyCalibration(Communication(bandwidth_efficiency=bandwidth, overlap_efficiency=overlap),
                                 previous, fitted, checks, ties)
    note = (f"calibrated by `{source}` to {len(checks)} measured runs of {model.name} ({measured.source.strip()}); "
            f"fitted {', '.join(fitted)}; rms log error {result.rms_log_error(False):.3f} -> "
            f"{result.rms_log_error(True):.3f} with compute model {cost_model.name}")
    kept = [n for n in ("bandwidth_efficiency", "overlap_efficiency") if n not in fitted]
    if kept:
        note += f". Kept {', '.join(kept)} from before: {previous.source.strip() or 'the default (ideal)'}"
    result.communication = result.communication.model_copy(update={"source": note})
    return result
