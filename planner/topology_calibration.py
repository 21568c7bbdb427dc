"""Fit a topology's communication efficiencies to measured runs (``pfplan topology calibrate``).

Two numbers say how far a box's software falls short of its links
(:class:`profiles.topology.Communication`): the achieved share of link bandwidth, and the
share of an "overlapped" transfer's time that really runs beside compute. They are fitted
one after the other, each on the runs that can see it, by minimising the squared log error
of the simulated latencies:

1. ``bandwidth_efficiency`` on runs whose traffic is all blocking (tensor, Ulysses, CFG):
   their time is compute plus transfers, nothing hides, so only bandwidth can explain them;
2. ``overlap_efficiency``, with that bandwidth, on runs with overlapped traffic
   (DistriFusion, Ring, PipeFusion).

Runs without communication (serial, data parallel) fit nothing; they show whether the
compute profile agrees with the box, which the fit assumes (calibrate the profile first:
``pfplan profile calibrate``). A number with no run that can see it keeps its old value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal

from pydantic import ValidationError

from profiles.cost_model import CostModel
from profiles.costs import dtype_bytes_of
from profiles.errors import InputError
from profiles.measured_runs import MeasuredRun, MeasuredRuns
from profiles.models import ModelPreset
from profiles.topology import Communication, Topology
from profiles.topology_graph import ClusterGraph
from simulator.engine import simulate
from simulator.plan import ParallelPlan, parse_parallel_spec, validate

RunKind = Literal["compute", "blocking", "overlapped"]
OVERLAPPED_AXES = ("pipefusion", "distrifusion", "ring")
"""Axes whose transfers run beside compute (stage sends, stale K/V gathers, K/V ring passes)."""
BLOCKING_AXES = ("tensor", "ulysses", "cfg")


@dataclass
class RunCheck:
    """One measured run against the simulation before and after calibration."""

    run: MeasuredRun
    kind: RunKind
    before_s: float
    after_s: float = 0.0


@dataclass
class TopologyCalibration:
    """What the fit found; ``fitted`` names the efficiencies some run could see."""

    communication: Communication
    previous: Communication
    fitted: list[str]
    checks: list[RunCheck] = field(default_factory=list)

    def rms_log_error(self, after: bool, kinds: tuple[RunKind, ...] = ("blocking", "overlapped")) -> float:
        errs = [math.log((c.after_s if after else c.before_s) / c.run.latency_s) for c in self.checks
                if c.kind in kinds]
        return math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else 0.0


def run_kind(plan: ParallelPlan) -> RunKind:
    degrees = plan.degrees.model_dump()
    if any(degrees.get(axis, 1) > 1 for axis in OVERLAPPED_AXES):
        return "overlapped"
    if any(degrees.get(axis, 1) > 1 for axis in BLOCKING_AXES):
        return "blocking"
    return "compute"


def run_plan(run: MeasuredRun, index: int, model: ModelPreset, cluster: ClusterGraph, file: str) -> ParallelPlan:
    """The plan a measured run describes, checked against the model and topology."""
    where = f"runs[{index}]"
    try:
        fields = parse_parallel_spec(run.parallel)
        fields.setdefault("warmup_steps", 1 if any(fields["degrees"].get(a, 1) > 1
                                                   for a in ("pipefusion", "distrifusion")) else 0)
        plan = ParallelPlan(model=model.name, height_px=run.resolution, width_px=run.resolution,
                            steps=run.steps, **fields)
    except InputError as exc:
        raise InputError(exc.message, file=file, field=f"{where}.parallel") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"{'.'.join(map(str, err['loc']))}: {err['msg']}", file=file,
                         field=f"{where}.parallel") from None
    validate(plan, model, cluster, file=f"{file} {where}")
    return plan


def best_on_grid(error_of: Callable[[float], float], lo: float, hi: float, steps: int = 20) -> float:
    """Minimise ``error_of`` on [lo, hi]: a coarse grid, then a 10× finer one around the best point."""
    coarse = [lo + i * (hi - lo) / steps for i in range(steps + 1)]
    best = min(coarse, key=error_of)
    step = (hi - lo) / steps / 10
    fine = [best + j * step for j in range(-10, 11) if lo <= best + j * step <= hi]
    return round(min(fine, key=error_of), 4)


def calibrate_topology(topology: Topology, model: ModelPreset, cost_model: CostModel, measured: MeasuredRuns, *,
                       file: str, source: str) -> TopologyCalibration:
    """Fit the topology's :class:`Communication` to ``measured``; see the module docstring."""
    if measured.model != model.name:
        raise InputError(f"the runs are of {measured.model!r}, not {model.name!r}", file=file, field="model")
    dtype = dtype_bytes_of(cost_model)
    base = ClusterGraph(topology)
    plans = [run_plan(run, i, model, base, file) for i, run in enumerate(measured.runs)]
    kinds = [run_kind(plan) for plan in plans]
    cache: dict[tuple[float, float], list[float]] = {}

    def predicted(bandwidth: float, overlap: float) -> list[float]:
        key = (bandwidth, overlap)
        if key not in cache:
            comm = Communication(bandwidth_efficiency=bandwidth, overlap_efficiency=overlap)
            cluster = ClusterGraph(topology.model_copy(update={"communication": comm}))
            cache[key] = [simulate(plan, model, cluster, cost_model, dtype_bytes=dtype).latency_s for plan in plans]
        return cache[key]

    def error(values: list[float], kind: RunKind) -> float:
        return sum(math.log(v / run.latency_s) ** 2
                   for v, run, k in zip(values, measured.runs, kinds) if k == kind)

    previous = topology.communication
    bandwidth, overlap = previous.bandwidth_efficiency, previous.overlap_efficiency
    fitted = []
    if "blocking" in kinds:
        bandwidth = best_on_grid(lambda b: error(predicted(b, overlap), "blocking"), 0.02, 1.0)
        fitted.append("bandwidth_efficiency")
    if "overlapped" in kinds:
        overlap = best_on_grid(lambda o: error(predicted(bandwidth, o), "overlapped"), 0.0, 1.0)
        fitted.append("overlap_efficiency")
    if not fitted:
        raise InputError("no run has communication (all are serial or data parallel): nothing to fit",
                         file=file, field="runs")
    before = predicted(previous.bandwidth_efficiency, previous.overlap_efficiency)
    after = predicted(bandwidth, overlap)
    checks = [RunCheck(run, kind, b, a) for run, kind, b, a in zip(measured.runs, kinds, before, after)]
    result = TopologyCalibration(Communication(bandwidth_efficiency=bandwidth, overlap_efficiency=overlap),
                                 previous, fitted, checks)
    note = (f"calibrated by `{source}` to {len(checks)} measured runs of {model.name} ({measured.source.strip()}); "
            f"fitted {', '.join(fitted)}; rms log error {result.rms_log_error(False):.3f} -> "
            f"{result.rms_log_error(True):.3f} with compute model {cost_model.name}")
    result.communication = result.communication.model_copy(update={"source": note})
    return result
