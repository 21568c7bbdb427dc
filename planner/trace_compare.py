"""How far the simulator was from the real run: a simulated and a measured trace, compared.

``pfrun --trace`` and ``pfplan simulate --trace`` write the same Chrome trace format
(:mod:`simulator.trace`) for the same plan; this module lines the two up by the keys both
producers agree on (rank = ``tid``, category, and the ``step`` / ``patch`` / ``stage``
args) and says where the prediction was off: end to end, per category and rank, per
diffusion step, and per compute unit (one stage's blocks on one patch of one step).

Errors are ``(measured - simulated) / simulated`` in percent; compute units are compared as
the ratio measured / simulated. Work only one side has (the VAE decode and the scheduler
step, which the simulator does not price; a rank or step missing on one side) is listed
in ``one_sided`` and left out of every error, so an unmodelled part is named, not hidden
in a percentage. One exception: embedding and final layer timed apart on one side only are
added to that side's compute (the other side's forward-pass event includes them) and listed
as ``folded``. Both traces count time from the start of the run (the barrier before the
first step), so an event's end is the latency up to it.

Busy time is the union of a rank's event intervals in a category group (overlapping
asynchronous sends are not counted twice). Communication is ``send``, ``recv``,
``collective`` and ``wait`` together: the runtime's blocking receive includes the wait for
its peer, which the simulator records apart as ``wait``, so only their sum is comparable.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from profiles.errors import InputError
from simulator.plan import ParallelPlan
from simulator.trace import Trace, TraceEvent, load_trace

GROUP_OF_CATEGORY = {"compute": "compute", "embed": "embed", "final": "final", "scheduler": "scheduler",
                     "send": "communication", "recv": "communication", "collective": "communication",
                     "wait": "communication", "vae": "vae"}
GROUPS = ("compute", "embed", "final", "scheduler", "communication", "vae")
FOLDABLE = ("embed", "final")
"""Parts of a forward pass a producer may time inside its compute event: the runtime's
unpipelined forward (no PipeFusion) is one ``blocks`` event from embedding to final layer."""
PLAN_FIELDS_IGNORED = ("prediction", "provenance", "notes", "topology")
"""Plan fields that do not change what runs: what was predicted, where it came from, and the
topology the simulator priced it on (the measured run ran on whatever hardware it found)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyComparison(_Model):
    simulated_s: float = Field(description="End of the last compared event of the simulated trace.")
    measured_s: float = Field(description="End of the last compared event of the measured trace.")
    error_pct: float | None = Field(description="(measured - simulated) / simulated × 100; None if simulated is 0.")
    simulated_first_event_s: float = Field(description="Start of the first compared event (time before it is untraced).")
    measured_first_event_s: float


class CategoryBusy(_Model):
    category: str = Field(description="compute, embed, final, scheduler, communication or vae.")
    rank: int
    simulated_s: float
    measured_s: float
    error_pct: float | None


class StepTime(_Model):
    step: int
    warmup: bool | None = Field(None, description="A warm-up (full-image) step, as the events say.")
    simulated_s: float = Field(description="End of this step's last event minus the end of the previous step's.")
    measured_s: float
    error_pct: float | None


class UnitKey(_Model):
    rank: int
    step: int | None
    patch: int | None = Field(description="None for a warm-up step (the whole image).")
    stage: int | None


class ComputeUnits(_Model):
    matched: int = Field(description="Compute events found on both sides under the same key.")
    median_ratio: float | None = Field(description="Median of measured / simulated duration.")
    min_ratio: float | None
    max_ratio: float | None
    worst_ratio: float | None = Field(description="The ratio farthest from 1 (in log scale).")
    worst_unit: UnitKey | None
    warmup_median_ratio: float | None = Field(description="Median ratio of the warm-up steps' units.")
    steady_median_ratio: float | None = Field(description="Median ratio of the units after the warm-up.")


class OneSided(_Model):
    side: Literal["simulated", "measured"] = Field(description="The trace that has it.")
    kind: Literal["category", "folded", "rank", "step", "compute_unit"] = Field(
        description="folded: embed or final events only this side times apart from its forward pass; they are "
                    "added to its compute (the other side's compute events include them), so compared, not dropped.")
    name: str
    busy_s: float = Field(description="Its total event time on that side (0 for a compute unit key count).")


class TraceComparison(_Model):
    schema_version: Literal[1] = 1
    model: str
    plan_label: str
    simulated_device: str
    measured_device: str
    simulated_reported_latency_s: float | None = Field(description="latency_s the simulator wrote in the trace.")
    measured_reported_latency_s: float | None = Field(description="latency_s pfrun wrote (VAE decode included).")
    compared_categories: list[str] = Field(description="Category groups both traces have; errors use only these.")
    latency: LatencyComparison
    categories: list[CategoryBusy]
    steps: list[StepTime]
    compute_units: ComputeUnits
    one_sided: list[OneSided]


def error_pct(simulated: float, measured: float) -> float | None:
    if simulated == 0:
        return 0.0 if measured == 0 else None
    return (measured - simulated) / simulated * 100.0


def union_s(events: list[TraceEvent]) -> float:
    """Seconds covered by the events' intervals, overlaps counted once."""
    total, end = 0.0, -math.inf
    for e in sorted(events, key=lambda e: e.ts):
        start, stop = max(e.ts, end), e.ts + e.dur
        if stop > start:
            total += stop - start
        end = max(end, stop)
    return total / 1e6


def regrouped(trace: Trace) -> list[TraceEvent]:
    """The trace's work events with ``cat`` replaced by its category group."""
    return [e.model_copy(update={"cat": GROUP_OF_CATEGORY.get(e.cat, e.cat)}) for e in trace.work()]


def _plan_fields(plan: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in plan.items() if k not in PLAN_FIELDS_IGNORED and v is not None}


def _first_difference(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if (diff := _first_difference(a.get(key), b.get(key), f"{path}.{key}")) is not None:
                return diff
        return None
    return None if a == b else path


def check_pair(simulated: Trace, measured: Trace, *, simulated_file: str, measured_file: str) -> None:
    """Refuse a pair that is not one simulated and one measured trace of the same plan."""
    if (simulated.metadata.source, measured.metadata.source) == ("measured", "simulated"):
        raise InputError("the traces are in the wrong order: give the simulated one first, then the measured one",
                         file=simulated_file, field="metadata.source")
    if simulated.metadata.source != "simulated":
        raise InputError(f"expected a simulated trace (pfplan simulate --trace), got source "
                         f"{simulated.metadata.source!r}", file=simulated_file, field="metadata.source")
    if measured.metadata.source != "measured":
        raise InputError(f"expected a measured trace (pfrun --trace), got source {measured.metadata.source!r}",
                         file=measured_file, field="metadata.source")
    for trace, file in ((simulated, simulated_file), (measured, measured_file)):
        if not trace.metadata.plan:
            raise InputError("the trace does not say which plan it ran", file=file, field="metadata.plan")
        if not trace.work():
            raise InputError("the trace has no complete (ph X) events", file=file, field="traceEvents")
    if simulated.metadata.model != measured.metadata.model:
        raise InputError(f"different models: simulated {simulated.metadata.model!r}, measured "
                         f"{measured.metadata.model!r}", file=measured_file, field="metadata.model")
    sim_plan, meas_plan = _plan_fields(simulated.metadata.plan), _plan_fields(measured.metadata.plan)
    if (where := _first_difference(sim_plan, meas_plan, "metadata.plan")) is not None:
        key_path = where.split(".")[2:]
        a, b = sim_plan, meas_plan
        for key in key_path:
            a = a.get(key) if isinstance(a, dict) else None
            b = b.get(key) if isinstance(b, dict) else None
        raise InputError(f"the traces ran different plans: simulated {a!r}, measured {b!r}",
                         file=measured_file, field=where)


def _plan_label(plan: dict[str, Any]) -> str:
    try:
        p = ParallelPlan.model_validate(_plan_fields(plan))
    except ValueError:
        return "?"
    return f"{p.degrees.label()} (patches {p.patches}, warm-up {p.warmup_steps}, {p.steps} steps)"


def _busy_by_group(events: list[TraceEvent]) -> dict[str, float]:
    by: dict[str, list[TraceEvent]] = defaultdict(list)
    for e in events:
        by[e.cat].append(e)
    return {g: sum(union_s([e for e in evs if e.tid == r]) for r in {e.tid for e in evs}) for g, evs in by.items()}


def _step_ends_s(events: list[TraceEvent]) -> tuple[dict[int, float], dict[int, bool]]:
    ends: dict[int, float] = {}
    warm: dict[int, bool] = {}
    for e in events:
        step = e.args.get("step")
        if step is None:
            continue
        ends[step] = max(ends.get(step, 0.0), (e.ts + e.dur) / 1e6)
        if e.args.get("warmup") is not None:
            warm[step] = warm.get(step, False) or bool(e.args["warmup"])
    return ends, warm


def _step_times_s(ends: dict[int, float]) -> dict[int, float]:
    out, previous = {}, 0.0
    for step in sorted(ends):
        out[step] = ends[step] - previous
        previous = ends[step]
    return out


def _unit_durations(events: list[TraceEvent]) -> dict[tuple, tuple[float, bool | None]]:
    """(rank, step, patch, stage) -> (µs, warm-up?); repeated keys (several events) add up."""
    out: dict[tuple, tuple[float, bool | None]] = {}
    for e in events:
        if e.cat != "compute":
            continue
        key = (e.tid, e.args.get("step"), e.args.get("patch"), e.args.get("stage"))
        dur, warm = out.get(key, (0.0, None))
        flag = e.args.get("warmup")
        out[key] = (dur + e.dur, warm if flag is None else bool(flag))
    return out


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _sort_key(key: tuple) -> tuple:
    return tuple(-1 if v is None else v for v in key)


def compare_units(sim: list[TraceEvent], meas: list[TraceEvent]) -> tuple[ComputeUnits, list[OneSided]]:
    a, b = _unit_durations(sim), _unit_durations(meas)
    ratios: list[tuple[float, tuple, bool | None]] = []
    for key in sorted(set(a) & set(b), key=_sort_key):
        if a[key][0] > 0:
            warm = a[key][1] if a[key][1] is not None else b[key][1]
            ratios.append((b[key][0] / a[key][0], key, warm))
    values = [r for r, _, _ in ratios]
    worst = max(ratios, key=lambda t: abs(math.log(t[0])) if t[0] > 0 else math.inf, default=None)
    units = ComputeUnits(
        matched=len(set(a) & set(b)), median_ratio=_median(values),
        min_ratio=min(values, default=None), max_ratio=max(values, default=None),
        worst_ratio=worst[0] if worst else None,
        worst_unit=UnitKey(rank=worst[1][0], step=worst[1][1], patch=worst[1][2], stage=worst[1][3]) if worst else None,
        warmup_median_ratio=_median([r for r, _, w in ratios if w]),
        steady_median_ratio=_median([r for r, _, w in ratios if w is False]))
    lone = [OneSided(side=side, kind="compute_unit", busy_s=mine[k][0] / 1e6,
                     name=f"rank {k[0]} step {k[1]} patch {k[2]} stage {k[3]}")
            for side, mine, other in (("simulated", a, b), ("measured", b, a))
            for k in sorted(set(mine) - set(other), key=_sort_key)]
    return units, lone


def compare(simulated: Trace, measured: Trace, *, simulated_file: str = "simulated",
            measured_file: str = "measured") -> TraceComparison:
    check_pair(simulated, measured, simulated_file=simulated_file, measured_file=measured_file)
    one_sided: list[OneSided] = []
    ev = {"simulated": regrouped(simulated), "measured": regrouped(measured)}
    for g in FOLDABLE:
        for side, other in (("simulated", "measured"), ("measured", "simulated")):
            cats, other_cats = {e.cat for e in ev[side]}, {e.cat for e in ev[other]}
            if g in cats and g not in other_cats and "compute" in cats and "compute" in other_cats:
                one_sided.append(OneSided(side=side, kind="folded", name=g,
                                          busy_s=_busy_by_group(ev[side]).get(g, 0.0)))
                ev[side] = [e.model_copy(update={"cat": "compute"}) if e.cat == g else e for e in ev[side]]
    busy = {side: _busy_by_group(events) for side, events in ev.items()}
    order = [*GROUPS, *sorted((set(busy["simulated"]) | set(busy["measured"])) - set(GROUPS))]
    shared = [g for g in order if g in busy["simulated"] and g in busy["measured"]]
    for side, other in (("simulated", "measured"), ("measured", "simulated")):
        for g in order:
            if g in busy[side] and g not in busy[other]:
                one_sided.append(OneSided(side=side, kind="category", name=g, busy_s=busy[side][g]))

    sim_ev = [e for e in ev["simulated"] if e.cat in shared]
    meas_ev = [e for e in ev["measured"] if e.cat in shared]
    sim_ranks, meas_ranks = {e.tid for e in sim_ev}, {e.tid for e in meas_ev}
    for side, evs, mine, other in (("simulated", sim_ev, sim_ranks, meas_ranks),
                                   ("measured", meas_ev, meas_ranks, sim_ranks)):
        for r in sorted(mine - other):
            one_sided.append(OneSided(side=side, kind="rank", name=f"rank {r}",
                                      busy_s=sum(e.dur for e in evs if e.tid == r) / 1e6))
    ranks = sorted(sim_ranks & meas_ranks)
    sim_ev = [e for e in sim_ev if e.tid in ranks]
    meas_ev = [e for e in meas_ev if e.tid in ranks]

    latency_sim = max((e.ts + e.dur for e in sim_ev), default=0.0) / 1e6
    latency_meas = max((e.ts + e.dur for e in meas_ev), default=0.0) / 1e6
    categories = []
    for g in shared:
        for r in ranks:
            s = union_s([e for e in sim_ev if e.cat == g and e.tid == r])
            m = union_s([e for e in meas_ev if e.cat == g and e.tid == r])
            if s == 0 and m == 0:  # e.g. the final layer on a first stage: nothing to compare
                continue
            categories.append(CategoryBusy(category=g, rank=r, simulated_s=s, measured_s=m, error_pct=error_pct(s, m)))

    (sim_ends, sim_warm), (meas_ends, meas_warm) = _step_ends_s(sim_ev), _step_ends_s(meas_ev)
    for side, ends, other in (("simulated", sim_ends, meas_ends), ("measured", meas_ends, sim_ends)):
        evs = sim_ev if side == "simulated" else meas_ev
        for step in sorted(set(ends) - set(other)):
            one_sided.append(OneSided(side=side, kind="step", name=f"step {step}",
                                      busy_s=sum(e.dur for e in evs if e.args.get("step") == step) / 1e6))
    both = sorted(set(sim_ends) & set(meas_ends))
    sim_steps = _step_times_s({s: sim_ends[s] for s in both})
    meas_steps = _step_times_s({s: meas_ends[s] for s in both})
    steps = [StepTime(step=s, warmup=sim_warm.get(s, meas_warm.get(s)), simulated_s=sim_steps[s],
                      measured_s=meas_steps[s], error_pct=error_pct(sim_steps[s], meas_steps[s])) for s in both]

    units, lone_units = compare_units(sim_ev, meas_ev)
    return TraceComparison(
        model=simulated.metadata.model, plan_label=_plan_label(simulated.metadata.plan),
        simulated_device=simulated.metadata.device, measured_device=measured.metadata.device,
        simulated_reported_latency_s=simulated.metadata.latency_s,
        measured_reported_latency_s=measured.metadata.latency_s, compared_categories=shared,
        latency=LatencyComparison(simulated_s=latency_sim, measured_s=latency_meas,
                                  error_pct=error_pct(latency_sim, latency_meas),
                                  simulated_first_event_s=min((e.ts for e in sim_ev), default=0.0) / 1e6,
                                  measured_first_event_s=min((e.ts for e in meas_ev), default=0.0) / 1e6),
        categories=categories, steps=steps, compute_units=units, one_sided=one_sided + lone_units)


def compare_files(simulated: Path | str, measured: Path | str) -> TraceComparison:
    return compare(load_trace(simulated), load_trace(measured), simulated_file=str(simulated),
                   measured_file=str(measured))
