"""Choose the plan to run: enumerate, prune by rules and memory, estimate, simulate the best.

The pipeline (Vidur's profile → estimator → event simulator → search)::

    plan shapes (space) ──► stage split + greedy placement ──► rules ──► memory fits?
        ──► fast estimate (closed form) ──► best K by the objective
        ──► discrete-event simulation of each placement alternative ──► ranked candidates

Never returned: a plan that breaks a rule or does not fit in device memory (checked by the
memory model before ranking and again by the simulation). The objective is the latency
of one generation, or throughput in images per second where ``data`` replicas each
produce one image per generation. Every runner-up says why it lost to the chosen plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Literal

from simulator.runnable import unrunnable_reason
from planner.errors import PlannerError
from planner.placement import Placement, alternatives, with_placement
from planner.space import SpaceOptions, plan_shapes
from planner.stage_split import choose_split
from profiles.costs.cost_model import CostModel
from profiles.costs.selection import dtype_bytes_of
from profiles.catalog.gpus import get_gpu
from profiles.catalog.models import ModelPreset
from profiles.topology.graph import ROUTE_CLASSES, ClusterGraph
from simulator.plan import Degrees, ParallelPlan, Prediction, violations

Objective = Literal["latency", "throughput"]
Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: the CLI draws a bar; the library stays silent."""

GB = 1e9


@dataclass
class Candidate:
    """One plan that fits, with its estimate and (for the best K) its simulation."""

    plan: ParallelPlan
    placement_name: str
    estimate_s: float
    peak_memory_bytes: int
    capacity_bytes: int
    peak_device: str
    runnable_reason: str | None
    prediction: Prediction | None = None
    lost_because: str = ""

    @property
    def simulated(self) -> bool:
        return self.prediction is not None

    @property
    def latency_s(self) -> float:
        return self.prediction.latency_s if self.prediction else self.estimate_s

    @property
    def throughput_images_per_s(self) -> float:
        return self.plan.degrees.images_per_generation() / self.latency_s if self.latency_s > 0 else 0.0

    def objective_key(self, objective: Objective) -> tuple[float, int]:
        value = self.latency_s if objective == "latency" else -self.throughput_images_per_s
        return (value, self.plan.world_size)


@dataclass
class Rejected:
    plan: ParallelPlan
    reason: str
    peak_memory_bytes: int | None = None
    """Set when the plan was rejected for memory."""


@dataclass
class SearchResult:
    ranked: list[Candidate]
    """Simulated candidates best first, then estimated-only ones by estimate."""
    rejected: list[Rejected]
    baseline_latency_s: float | None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def best(self) -> Candidate:
        return self.ranked[0]


@dataclass(frozen=True)
class SearchSettings:
    objective: Objective = "latency"
    """latency of one generation, or throughput (images/s, data replicas counted)."""
    min_warmup: int = 1
    """Warm-up steps every stale strategy runs: the quality floor."""
    max_devices: int | None = None
    """Use at most this many devices (None: the whole cluster)."""
    runnable_only: bool = False
    """Only plans pfrun executes today."""
    simulate_top: int = 10
    """How many shapes (best by estimate) the event simulator ranks."""
    placement_top: int = 4
    """How many of those also try every placement alternative."""
    best_per_device_count: bool = False
    """Also simulate the best-estimated shape of every device count (capacity planning, reports)."""


def memory_check(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph,
                 dtype_bytes: int) -> tuple[int, int, str]:
    """(peak bytes, that device's capacity, device) of the fullest device, as a fraction of capacity."""
    from simulator.memory import memory_per_device

    per_device = memory_per_device(plan, model, cluster, dtype_bytes=dtype_bytes)
    worst = max(per_device, key=lambda d: per_device[d].total / get_gpu(cluster.device_gpu[d]).memory_bytes)
    return int(per_device[worst].total), get_gpu(cluster.device_gpu[worst]).memory_bytes, worst


def does_not_fit(peak: int, capacity: int, device: str) -> str:
    return f"does not fit: {peak / GB:.1f} GB > {capacity / GB:.1f} GB on {device}"


def prepare(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph,
            cost_model: CostModel) -> list[tuple[ParallelPlan, Placement]]:
    """``plan`` with its balanced stage split under each placement alternative (greedy first)."""
    split = choose_split(plan, model, cost_model)
    shaped = plan.model_copy(update={"stage_split": split})
    return [(with_placement(shaped, p), p) for p in alternatives(shaped, model, cluster)]


def simulate_prediction(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph,
                        cost_model: CostModel, dtype_bytes: int) -> tuple[Prediction | None, str | None]:
    """The simulator's prediction, or why the simulated run does not fit."""
    from simulator.engine import simulate

    result = simulate(plan, model, cluster, cost_model, dtype_bytes=dtype_bytes)
    if not result.fits:
        worst = max(result.prediction.peak_memory_bytes, key=result.prediction.peak_memory_bytes.get,
                    default=None)
        if worst is None:
            return None, "does not fit (simulated run ran out of memory)"
        return None, does_not_fit(result.prediction.peak_memory_bytes[worst],
                                  result.prediction.memory_capacity_bytes.get(worst, 0), worst)
    return result.prediction, None


def baseline_latency(model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel,
                     options: SpaceOptions, dtype_bytes: int) -> float | None:
    """Simulated latency of the serial plan on the first device (None if it does not fit there)."""
    serial = ParallelPlan(model=model.name, height_px=options.height_px, width_px=options.width_px,
                          steps=options.steps, degrees=Degrees(), placement=[cluster.devices[0]])
    peak, capacity, _ = memory_check(serial, model, cluster, dtype_bytes)
    if peak > capacity:
        return None
    prediction, _ = simulate_prediction(serial, model, cluster, cost_model, dtype_bytes)
    return prediction.latency_s if prediction else None


def search(model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel, *, height_px: int,
           width_px: int, steps: int, settings: SearchSettings = SearchSettings(),
           progress: Progress | None = None, topology_name: str | None = None) -> SearchResult:
    """Rank the plans for ``model`` on ``cluster``; raise :class:`PlannerError` if none fits."""
    from simulator.estimate import estimate_latency_s

    report = progress or (lambda phase, done, total: None)
    max_devices = min(settings.max_devices or len(cluster.devices), len(cluster.devices))
    if max_devices < 1:
        raise PlannerError(f"--max-gpus must be at least 1, got {settings.max_devices}", field="--max-gpus")
    options = SpaceOptions(height_px, width_px, steps, max_devices, settings.min_warmup)
    shapes = list(plan_shapes(model, options, topology=topology_name))
    dtype_bytes = dtype_bytes_of(cost_model)
    counts = {"shapes": len(shapes), "rule_violations": 0, "not_runnable": 0, "does_not_fit": 0}
    rejected: list[Rejected] = []
    fitting: list[tuple[Candidate, ParallelPlan]] = []
    for index, shape in enumerate(shapes):
        report("estimating", index, len(shapes))
        reason = unrunnable_reason(shape, model)
        if settings.runnable_only and reason:
            counts["not_runnable"] += 1
            continue
        plan, placement = prepare(shape, model, cluster, cost_model)[0]
        broken = violations(plan, model, cluster)
        if broken:
            counts["rule_violations"] += 1
            rejected.append(Rejected(plan, "; ".join(broken)))
            continue
        peak, capacity, device = memory_check(plan, model, cluster, dtype_bytes)
        if peak > capacity:
            counts["does_not_fit"] += 1
            rejected.append(Rejected(plan, does_not_fit(peak, capacity, device), peak))
            continue
        estimate = estimate_latency_s(plan, model, cluster, cost_model, dtype_bytes=dtype_bytes)
        fitting.append((Candidate(plan, placement.name, estimate, peak, capacity, device, reason), shape))
    report("estimating", len(shapes), len(shapes))
    if not fitting:
        raise impossible(model, cluster, height_px, rejected, settings)

    fitting.sort(key=lambda pair: pair[0].objective_key(settings.objective))
    chosen = fitting[:settings.simulate_top]
    if settings.best_per_device_count:
        sizes = {c.plan.world_size for c, _ in chosen}
        for pair in fitting[settings.simulate_top:]:
            if pair[0].plan.world_size not in sizes:
                sizes.add(pair[0].plan.world_size)
                chosen.append(pair)
    baseline = baseline_latency(model, cluster, cost_model, options, dtype_bytes)
    simulated: list[Candidate] = []
    for index, (candidate, shape) in enumerate(chosen):
        report("simulating", index, len(chosen))
        variants = prepare(shape, model, cluster, cost_model)
        if index >= settings.placement_top:
            variants = variants[:1]
        best: Candidate | None = None
        for plan, placement in variants:
            prediction, why = simulate_prediction(plan, model, cluster, cost_model, dtype_bytes)
            if prediction is None:
                rejected.append(Rejected(plan, f"{why} (simulated, {placement.name} placement)"))
                continue
            trial = replace(candidate, plan=plan.model_copy(update={"prediction": prediction}),
                            placement_name=placement.name, prediction=prediction)
            if best is None or trial.objective_key(settings.objective) < best.objective_key(settings.objective):
                best = trial
        if best is not None:
            simulated.append(best)
    report("simulating", len(chosen), len(chosen))
    counts["simulated"] = len(chosen)
    if not simulated:
        raise impossible(model, cluster, height_px, rejected, settings)
    simulated.sort(key=lambda c: c.objective_key(settings.objective))
    done = {id(c) for c, _ in chosen}
    rest = [c for c, _ in fitting if id(c) not in done]
    ranked = simulated + rest
    explain_losses(ranked, settings.objective)
    return SearchResult(ranked, rejected, baseline, counts)


def impossible(model: ModelPreset, cluster: ClusterGraph, height_px: int, rejected: list[Rejected],
               settings: SearchSettings) -> PlannerError:
    """The one-line error for a job no plan can do, naming the smallest footprint seen."""
    where = cluster.topology.name
    fits = [r for r in rejected if r.peak_memory_bytes is not None]
    if fits:
        smallest = min(fits, key=lambda r: r.peak_memory_bytes or 0)
        return PlannerError(f"no plan fits {model.name} at {height_px} px on {where}: even the smallest "
                            f"footprint found ({smallest.plan.degrees.label()}) {smallest.reason}",
                            field="--model")
    extra = " that pfrun can run (drop --runnable-only to see the others)" if settings.runnable_only else ""
    return PlannerError(f"no valid plan{extra} for {model.name} at {height_px} px on {where}", field="--model")


def explain_losses(ranked: list[Candidate], objective: Objective) -> None:
    """Fill ``lost_because`` of every candidate but the first, comparing it with the first."""
    if not ranked:
        return
    best = ranked[0]
    best.lost_because = ""
    for cand in ranked[1:]:
        cand.lost_because = loss_reason(cand, best, objective)


def loss_reason(cand: Candidate, best: Candidate, objective: Objective) -> str:
    if objective == "latency":
        ratio = cand.latency_s / best.latency_s if best.latency_s else float("inf")
        head = f"{ratio:.2f}× the best latency"
    else:
        ratio = best.throughput_images_per_s / cand.throughput_images_per_s if cand.throughput_images_per_s else 0
        head = f"{ratio:.2f}× less throughput"
    if abs(ratio - 1) < 1e-3:
        return f"same {objective} with {cand.plan.world_size} GPUs (best uses {best.plan.world_size})" \
            if cand.plan.world_size > best.plan.world_size else f"ties the best on {objective}"
    if not cand.simulated:
        return f"{head} by the fast estimate (not simulated)"
    detail = breakdown_difference(cand, best)
    return f"{head}; {detail}" if detail else head


def breakdown_difference(cand: Candidate, best: Candidate) -> str:
    """The breakdown entry where ``cand`` spends most more than ``best``, with its slowest links."""
    assert cand.prediction is not None
    mine = cand.prediction.breakdown_s
    theirs = best.prediction.breakdown_s if best.prediction else {}
    if not mine:
        return ""
    key = max(mine, key=lambda k: mine[k] - theirs.get(k, 0.0))
    if mine[key] - theirs.get(key, 0.0) <= 0:
        return ""
    text = f"{key.replace('_', ' ')} {mine[key]:.3g} s vs {theirs.get(key, 0.0):.3g} s"
    traffic = {k: v for k, v in cand.prediction.bytes_by_route_class.items() if v > 0}
    if traffic and "comm" in key:
        order = ("X", *ROUTE_CLASSES)
        slowest = max(traffic, key=lambda c: order.index(c) if c in order else -1)
        text += f" ({traffic[slowest] / GB:.2g} GB over {slowest} links)"
    return text
