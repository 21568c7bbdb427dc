"""Choose the plan to run: enumerate, prune by rules and memory, estimate, simulate the best.

The pipeline (Vidur's profile → estimator → event simulator → search)::

    plan shapes (space) ──► compute-only bound, cheapest first ──► stage split + greedy placement
        ──► rules ──► memory fits? ──► fast estimate (closed form) ──► best K by the objective
        ──► discrete-event simulation of each placement alternative ──► ranked candidates

At cluster scale the same answer costs less (``SearchSettings.exhaustive`` turns it off):

- one replica's shapes are enumerated and multiplied into every data degree, and a plan
  is built only when it is priced (:func:`planner.space.replica_shapes`);
- shapes are priced in the order of their lower bound (compute and the collectives a pass
  cannot overlap, at the cluster's fastest routes: :func:`simulator.estimate.compute_bound_s`);
  once ``simulate_top`` shapes fit with
  estimates better than the next bound, no later shape can enter the simulated set, so the
  rest are counted as ``pruned_by_bound`` and skipped. The simulated set, and so the
  ranking's head, is the exhaustive search's; only the estimated-only tail is shorter;
- every price is shared between plans (:class:`simulator.engine.PriceCache`), and an
  estimate is reused for every plan whose first replica has the same shape, split and
  placement class (identical nodes and switches give identical routes; the estimate reads
  only the first replica);
- stage splits are memoised per patch shape, and the placement's device window is found
  without comparing every pair of devices (:mod:`planner.placement`).
- a simulation stops once its clock passes what it would have to beat to change the answer
  (:mod:`planner.stopping`): a placement alternative the best placement so far, a shape the
  K-th best latency finished in the waves of K shapes before its own (``SearchSettings.exact_top``).
  The best K, the plan written and every finished number are the full runs'; a stopped shape is
  ranked by its lower bound;
- the shapes of one wave are simulated side by side on ``SearchSettings.jobs`` processes
  (:mod:`planner.simulate_chosen`), with the same answer for any number.

Never returned: a plan that breaks a rule or does not fit in device memory (checked by the
memory model before ranking and again by the simulation). The objective is the latency
of one generation, or throughput in images per second where ``data`` replicas each
produce one image per generation. Every runner-up says why it lost to the chosen plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from simulator.runnable import unrunnable_reason
from planner.errors import PlannerError
from planner.placement import Placement, alternatives, with_placement
from planner.simulated import GB, does_not_fit, simulate_prediction
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
    stopped_at_s: float | None = None
    """Set when its simulation was stopped at this simulated time because it could no longer enter
    the exactly ranked top K (:mod:`planner.stopping`): its latency is at least this; ``prediction`` is None."""

    @property
    def simulated(self) -> bool:
        """Simulated to the end (a stopped run is not: it has a lower bound only)."""
        return self.prediction is not None

    @property
    def stopped(self) -> bool:
        return self.stopped_at_s is not None

    @property
    def latency_s(self) -> float:
        """The simulated latency; for a stopped run its lower bound; else the fast estimate."""
        if self.prediction:
            return self.prediction.latency_s
        return self.stopped_at_s if self.stopped_at_s is not None else self.estimate_s

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
    exhaustive: bool = False
    """Estimate every shape (no bound pruning, no memoised estimates) and simulate every chosen run to its
    end: the reference the fast path must match."""
    exact_top: int | None = 5
    """K: the best K shapes are ranked exactly; a later shape's simulation stops once its clock passes
    the K-th best finished latency (reported as a lower bound, :mod:`planner.stopping`). None: never."""
    jobs: int = 1
    """Processes that simulate the chosen shapes side by side (:mod:`planner.simulate_chosen`); the
    answer is the same for any number."""


def memory_check(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph,
                 dtype_bytes: int) -> tuple[int, int, str]:
    """(peak bytes, that device's capacity, device) of the fullest device, as a fraction of capacity."""
    from simulator.memory import memory_per_device

    per_device = memory_per_device(plan, model, cluster, dtype_bytes=dtype_bytes)
    # ranks of one stage share one breakdown and devices of one kind one capacity: each priced once
    totals: dict[int, int] = {}
    capacities: dict[str, int] = {}

    def fullness(device: str) -> float:
        m = per_device[device]
        total = totals.get(id(m))
        if total is None:
            total = totals[id(m)] = m.total
        kind = cluster.device_gpu[device]
        if kind not in capacities:
            capacities[kind] = get_gpu(kind).memory_bytes
        return total / capacities[kind]
    worst = max(per_device, key=fullness)
    return int(per_device[worst].total), get_gpu(cluster.device_gpu[worst]).memory_bytes, worst


def prepare(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph,
            cost_model: CostModel) -> list[tuple[ParallelPlan, Placement]]:
    """``plan`` with its balanced stage split under each placement alternative (greedy first)."""
    split = choose_split(plan, model, cost_model)
    shaped = plan.model_copy(update={"stage_split": split})
    return [(with_placement(shaped, p), p) for p in alternatives(shaped, model, cluster)]


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


class _Pricer:
    """Everything the search prices per plan, memoised for the plans of one search."""

    def __init__(self, model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel, dtype_bytes: int,
                 *, memoise: bool) -> None:
        from simulator.engine import PriceCache

        self.model, self.cluster, self.cost_model, self.dtype_bytes = model, cluster, cost_model, dtype_bytes
        self.memoise = memoise
        self.cache = PriceCache() if memoise else None
        self._splits: dict[tuple, list[int] | None] = {}
        self._estimates: dict[tuple, float] = {}
        self._memory: dict[tuple, tuple[int, int, int]] = {}

    def prepare(self, shape: ParallelPlan, *, greedy_only: bool = False) -> list[tuple[ParallelPlan, Placement]]:
        if not self.memoise:
            return prepare(shape, self.model, self.cluster, self.cost_model)
        from planner.stage_split import patch_shape_tokens
        from simulator.strategies.cfg import batch_per_pass

        key = (patch_shape_tokens(shape, self.model), batch_per_pass(shape.degrees.as_dict(), self.model),
               shape.degrees.pipeline_stages)
        if key not in self._splits:
            self._splits[key] = choose_split(shape, self.model, self.cost_model)
        shaped = shape.model_copy(update={"stage_split": self._splits[key]})
        return [(with_placement(shaped, p), p)
                for p in alternatives(shaped, self.model, self.cluster, greedy_only=greedy_only)]

    def memory(self, plan: ParallelPlan) -> tuple[int, int, str]:
        if not self.memoise:
            return memory_check(plan, self.model, self.cluster, self.dtype_bytes)
        kinds = tuple(self.cluster.device_gpu[d] for d in plan.placement)
        key = (tuple(plan.degrees.as_dict().items()), plan.patches, plan.warmup_steps,
               tuple(plan.stage_split or ()), kinds)
        hit = self._memory.get(key)
        if hit is None:
            peak, capacity, device = memory_check(plan, self.model, self.cluster, self.dtype_bytes)
            hit = self._memory[key] = (peak, capacity, plan.placement.index(device))
        return hit[0], hit[1], plan.placement[hit[2]]

    def estimate(self, plan: ParallelPlan) -> float:
        from simulator.estimate import estimate_latency_s

        if not self.memoise:
            return estimate_latency_s(plan, self.model, self.cluster, self.cost_model, dtype_bytes=self.dtype_bytes)
        # the estimate reads only the first replica (ranks 0..m-1: data is the outermost rank axis)
        replica = plan.degrees.model_copy(update={"data": 1})
        m = replica.world_size()
        key = (tuple(replica.as_dict().items()), plan.patches, plan.warmup_steps, plan.steps,
               tuple(plan.stage_split or ()), self.cluster.placement_class(plan.placement[:m]))
        value = self._estimates.get(key)
        if value is None:
            value = self._estimates[key] = estimate_latency_s(plan, self.model, self.cluster, self.cost_model,
                                                              dtype_bytes=self.dtype_bytes, cache=self.cache)
        return value


@dataclass
class _Pool:
    """The fitting candidates found so far and the objective values a new shape must beat."""

    objective: Objective
    keep: int
    per_device_count: bool
    fitting: list[tuple[Candidate, ParallelPlan, tuple]] = field(default_factory=list)
    top: list[tuple] = field(default_factory=list)
    best_by_size: dict[int, float] = field(default_factory=dict)

    def value(self, latency_s: float, images: int) -> float:
        return latency_s if self.objective == "latency" else -images / latency_s if latency_s > 0 else 0.0

    def add(self, cand: Candidate, shape: ParallelPlan, order: tuple) -> None:
        import bisect

        self.fitting.append((cand, shape, order))
        key = (*cand.objective_key(self.objective), order)
        bisect.insort(self.top, key)
        del self.top[self.keep:]
        size = cand.plan.world_size
        value = key[0]
        if size not in self.best_by_size or value < self.best_by_size[size]:
            self.best_by_size[size] = value

    def cannot_enter(self, bound_value: float, size: int) -> bool:
        """True when a shape whose objective is at best ``bound_value`` can be neither simulated nor its size's best."""
        full = len(self.top) >= self.keep and bound_value > self.top[-1][0]
        if not full or not self.per_device_count:
            return full
        return size in self.best_by_size and bound_value > self.best_by_size[size]


def search(model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel, *, height_px: int,
           width_px: int, steps: int, settings: SearchSettings = SearchSettings(),
           progress: Progress | None = None, topology_name: str | None = None) -> SearchResult:
    """Rank the plans for ``model`` on ``cluster``; raise :class:`PlannerError` if none fits."""
    from simulator.estimate import compute_bound_s, route_floor
    from planner.simulate_chosen import simulate_chosen
    from planner.space import replica_shapes, with_replicas

    from simulator.limits import size_violations

    too_big = size_violations(height_px, width_px, steps)
    if too_big:
        field_name, message = too_big[0].split(": ", 1)
        raise PlannerError(message, field={"steps": "--steps"}.get(field_name, "--resolution"))
    report = progress or (lambda phase, done, total: None)
    max_devices = min(settings.max_devices or len(cluster.devices), len(cluster.devices))
    if max_devices < 1:
        raise PlannerError(f"--max-gpus must be at least 1, got {settings.max_devices}", field="--max-gpus")
    options = SpaceOptions(height_px, width_px, steps, max_devices, settings.min_warmup)
    dtype_bytes = dtype_bytes_of(cost_model)
    pricer = _Pricer(model, cluster, cost_model, dtype_bytes, memoise=not settings.exhaustive)
    pool = _Pool(settings.objective, settings.simulate_top, settings.best_per_device_count)
    if settings.exhaustive:
        queue = [((i,), shape, shape.degrees.data, 0.0)
                 for i, shape in enumerate(plan_shapes(model, options, topology=topology_name))]
    else:
        bases = list(plan_shapes(model, options, topology=topology_name, replicas=False))
        floor = route_floor(cluster)  # the bound adds the collectives a pass cannot overlap, at these figures
        overlap = cluster.topology.communication.overlap_efficiency
        bounds = [compute_bound_s(b, model, cost_model, dtype_bytes=dtype_bytes, cache=pricer.cache, routes=floor,
                                  overlap_efficiency=overlap) for b in bases]
        images = [b.degrees.images_per_generation() for b in bases]
        queue = []
        for order, base, data in replica_shapes(bases, options):
            index = order[2]
            # the bound as an objective value; a hair looser than the estimate's own rounding
            queue.append((order, base, data, pool.value(bounds[index] * (1 - 1e-9), images[index] * data)))
        queue.sort(key=lambda row: (row[3], row[0]))
    counts = {"shapes": len(queue), "rule_violations": 0, "not_runnable": 0, "does_not_fit": 0,
              "pruned_by_bound": 0}
    rejected: list[Rejected] = []
    for index, (order, base, data, bound_value) in enumerate(queue):
        if index % 64 == 0:
            report("estimating", index, len(queue))
        if not settings.exhaustive and pool.cannot_enter(bound_value, base.degrees.world_size() * data):
            counts["pruned_by_bound"] += 1
            continue
        shape = with_replicas(base, data)
        reason = unrunnable_reason(shape, model)
        if settings.runnable_only and reason:
            counts["not_runnable"] += 1
            continue
        plan, placement = pricer.prepare(shape, greedy_only=True)[0]
        broken = violations(plan, model, cluster)
        if broken:
            counts["rule_violations"] += 1
            rejected.append(Rejected(plan, "; ".join(broken)))
            continue
        peak, capacity, device = pricer.memory(plan)
        if peak > capacity:
            counts["does_not_fit"] += 1
            rejected.append(Rejected(plan, does_not_fit(peak, capacity, device), peak))
            continue
        estimate = pricer.estimate(plan)
        pool.add(Candidate(plan, placement.name, estimate, peak, capacity, device, reason), shape, order)
    report("estimating", len(queue), len(queue))
    if not pool.fitting:
        raise impossible(model, cluster, height_px, rejected, settings)

    fitting = sorted(pool.fitting, key=lambda row: (*row[0].objective_key(settings.objective), row[2]))
    chosen = [(c, shape) for c, shape, _ in fitting[:settings.simulate_top]]
    if settings.best_per_device_count:
        sizes = {c.plan.world_size for c, _ in chosen}
        for c, shape, _ in fitting[settings.simulate_top:]:
            if c.plan.world_size not in sizes:
                sizes.add(c.plan.world_size)
                chosen.append((c, shape))
    baseline = baseline_latency(model, cluster, cost_model, options, dtype_bytes)
    simulated, refused = simulate_chosen(chosen, pricer, settings, counts, report)
    rejected += [Rejected(plan, reason) for plan, reason in refused]
    report("simulating", len(chosen), len(chosen))
    counts["simulated"] = len(chosen)
    if not simulated:
        raise impossible(model, cluster, height_px, rejected, settings)
    simulated.sort(key=lambda c: c.objective_key(settings.objective))
    done = {id(c) for c, _ in chosen}
    rest = [c for c, _, _ in fitting if id(c) not in done]
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
    if abs(ratio - 1) < 1e-3 and not cand.stopped:
        return f"same {objective} with {cand.plan.world_size} GPUs (best uses {best.plan.world_size})" \
            if cand.plan.world_size > best.plan.world_size else f"ties the best on {objective}"
    if cand.stopped:
        return f"at least {head} (simulation stopped at {cand.stopped_at_s:.3g} s: it cannot enter the top plans)"
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
