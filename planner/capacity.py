"""Capacity planning: how many GPUs keep the tail latency under an objective at a traffic level.

Two answers, the second built on the first:

* :func:`capacity_options`, the steady-state floor: a plan instance on ``n`` devices with
  ``data`` replicas inside it makes ``data`` images every ``latency`` seconds, so fewer than
  ``ceil(rate / (data / latency))`` instances cannot keep up at all (utilisation > 100 %).
  Worked example: rate 2 images/s, a 4-GPU plan at 1.5 s → 0.667 images/s per instance →
  3 instances = 12 GPUs at 100 % utilisation, 2 boxes of 8 GPUs.
* :func:`size_for_slo`, the queueing answer: requests arrive (Poisson, bursty or a trace,
  :mod:`planner.arrivals`), wait in queues in front of the replicas and are routed and
  batched (:mod:`planner.serving`); the service time of a replica is the event simulator's
  latency of its plan (:class:`PlanService`). Starting at the floor, replicas are added
  until the simulated p99 (or another percentile) meets the objective: the fewest GPUs,
  their boxes (replicas packed whole, first-fit), p50/p95/p99, SLO attainment,
  utilisation, and cost from the price table (:mod:`planner.prices`).

Batching: a batch of ``k`` requests is priced by running the event simulator with ``k``
times the plan's batch per pass (compute, activations and every collective that scales
with the batch grow with it) plus ``k − 1`` more VAE decodes. It is refused, with the
reason shown, where that is not what the simulator models: plans with CFG parallelism
(the latent and prediction exchanged between the CFG groups are priced for one image),
batches whose memory (every component but the weights × k, an upper bound) does not fit,
and cost models that cannot price the larger batch.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from planner.arrivals import Request, bursty, poisson, read_trace
from planner.prices import PriceTable
from planner.search import SearchResult
from planner.serving import Replica, Routing, ServingStats, serve
from profiles.catalog.gpus import get_gpu
from profiles.catalog.models import ModelPreset
from profiles.costs.cost_model import CostModel
from profiles.errors import InputError
from profiles.topology.graph import ClusterGraph
from simulator.plan import ParallelPlan, violations


@dataclass(frozen=True)
class CapacityOption:
    """The steady-state floor for one plan (no queueing: utilisation up to 100 %)."""

    label: str
    devices_per_replica: int
    latency_s: float
    replica_throughput: float
    """Images per second of one plan instance."""
    replicas: int
    total_devices: int
    boxes: int
    utilisation: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fastest_per_device_count(result: SearchResult, slo_s: float | None = None) -> dict[int, Any]:
    """The fastest simulated candidate of each device count (within ``slo_s`` when given)."""
    fastest: dict[int, Any] = {}
    for cand in result.ranked:
        if not cand.simulated or (slo_s is not None and cand.latency_s > slo_s):
            continue
        n = cand.plan.world_size
        if n not in fastest or cand.latency_s < fastest[n].latency_s:
            fastest[n] = cand
    return fastest


def capacity_options(result: SearchResult, *, rate_images_per_s: float, slo_s: float | None,
                     box_devices: int) -> list[CapacityOption]:
    """The fastest simulated plan of each device count, sized for the rate; fewest GPUs first."""
    options = []
    for n, cand in fastest_per_device_count(result, slo_s).items():
        per = cand.throughput_images_per_s
        replicas = max(1, math.ceil(rate_images_per_s / per - 1e-9))
        per_box = max(1, box_devices // n)
        options.append(CapacityOption(cand.plan.degrees.label(), n, cand.latency_s, per, replicas, replicas * n,
                                      math.ceil(replicas / per_box), rate_images_per_s / (replicas * per)))
    return sorted(options, key=lambda o: (o.total_devices, o.latency_s))


# -- service times from the event simulator ------------------------------------------------------

class PlanService:
    """A plan as a replica type: seconds to serve a batch of requests of one shape, from the simulator."""

    def __init__(self, plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel, *,
                 max_batch: int = 1, dtype_bytes: int = 2, latency_s: float | None = None) -> None:
        self.plan, self.model, self.cluster, self.cost_model = plan, model, cluster, cost_model
        self.dtype_bytes = dtype_bytes
        self.label = plan.degrees.label()
        self.devices = plan.world_size
        self.images_per_generation = plan.degrees.images_per_generation()
        self.shape = (plan.height_px, plan.steps)
        self._cache: dict[tuple[tuple[int, int], int], float] = {}
        if latency_s is not None:
            self._cache[(self.shape, 1)] = latency_s
        self.batch_note: str | None = None
        self.max_batch = 1
        if max_batch > 1:
            self.max_batch, self.batch_note = self._batch_limit(max_batch)

    def _plan_for(self, shape: tuple[int, int]) -> ParallelPlan:
        if shape == self.shape:
            return self.plan
        plan = self.plan.model_copy(update={"height_px": shape[0], "width_px": shape[0], "steps": shape[1],
                                            "prediction": None,
                                            "warmup_steps": min(self.plan.warmup_steps, shape[1])})
        broken = violations(plan, self.model, self.cluster)
        if broken:
            raise InputError(f"{self.label} cannot serve {shape[0]} px, {shape[1]} steps: {broken[0]}",
                             field="requests")
        return plan

    def _simulate(self, shape: tuple[int, int], per_pass: int) -> float:
        """Latency of one generation making ``per_pass`` images per data replica."""
        from simulator.engine import SimSettings, Simulation

        plan = self._plan_for(shape)
        sim = Simulation(plan, self.model, self.cluster, self.cost_model, SimSettings(dtype_bytes=self.dtype_bytes))
        if per_pass > 1:
            sim.work = replace(sim.work, batch=sim.work.batch * per_pass)
        result = sim.run()
        return result.latency_s + (per_pass - 1) * sim.vae_s()

    def generation_s(self, shape: tuple[int, int], per_pass: int = 1) -> float:
        key = (shape, per_pass)
        if key not in self._cache:
            self._cache[key] = self._simulate(shape, per_pass)
        return self._cache[key]

    def service_s(self, shape: tuple[int, int], batch: int) -> float:
        """Seconds to serve ``batch`` requests of ``shape`` (split over the plan's data replicas)."""
        return self.generation_s(shape, max(1, math.ceil(batch / self.images_per_generation)))

    @property
    def requests_per_service(self) -> int:
        return self.images_per_generation * self.max_batch

    def _batch_limit(self, wanted: int) -> tuple[int, str | None]:
        """The largest batch per pass up to ``wanted`` the simulator prices honestly, and why not more."""
        if self.plan.degrees.cfg > 1:
            return 1, "batching refused: CFG-parallel exchanges are priced for one image"
        from simulator.memory import memory_per_device

        memory = memory_per_device(self.plan, self.model, self.cluster, dtype_bytes=self.dtype_bytes)
        best = 1
        for k in range(2, wanted + 1):
            for device, m in memory.items():
                parts = {key: v for key, v in m.as_dict().items() if key != "total"}
                weights = sum(v for key, v in parts.items() if "param" in key or "weight" in key)
                need = weights + k * (sum(parts.values()) - weights)
                if need > get_gpu(self.cluster.gpu_of(device)).memory_bytes:
                    return best, f"batch {k} does not fit in memory on {device}"
            try:
                self.generation_s(self.shape, k)
            except Exception as exc:  # a profile without timings at that batch, say
                return best, f"batch {k} not priced by the cost model ({exc})"
            best = k
        return best, None

    def replica(self) -> Replica:
        return Replica(self.label, self.devices, self.service_s, self.requests_per_service)


# -- arrivals -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArrivalSpec:
    """Which arrival process to draw (``kind``: poisson, bursty, or trace with ``trace_path``)."""

    kind: str = "poisson"
    requests: int = 20000
    seed: int = 0
    burst_factor: float = 4.0
    burst_share: float = 0.2
    mean_burst_s: float = 30.0
    trace_path: str | None = None

    def draw(self, rate: float, shape: tuple[int, int]) -> list[Request]:
        rng = random.Random(self.seed)
        if self.kind == "poisson":
            return poisson(rate, self.requests, shape, rng)
        if self.kind == "bursty":
            return bursty(rate, self.requests, shape, rng, burst_factor=self.burst_factor,
                          burst_share=self.burst_share, mean_burst_s=self.mean_burst_s)
        if self.kind == "trace" and self.trace_path:
            from pathlib import Path

            return read_trace(Path(self.trace_path), shape)
        raise InputError(f"expected poisson, bursty or a trace file, got {self.kind!r}", field="--arrivals")


def offered_rate(requests: list[Request]) -> float:
    span = requests[-1].time_s - requests[0].time_s if len(requests) > 1 else 0.0
    return (len(requests) - 1) / span if span > 0 else float(len(requests))


# -- fleets ---------------------------------------------------------------------------------------

def boxes_for(replica_devices: list[int], box_devices: int) -> int:
    """Boxes needed when every replica sits whole in one box (first-fit decreasing)."""
    free: list[int] = []
    for n in sorted(replica_devices, reverse=True):
        if n > box_devices:
            raise InputError(f"a {n}-device replica does not fit a {box_devices}-device box", field="--topology")
        for i, room in enumerate(free):
            if room >= n:
                free[i] -= n
                break
        else:
            free.append(box_devices - n)
    return len(free)


@dataclass
class FleetResult:
    """One fleet (replicas of one or more plans) simulated under the arrivals."""

    mix: list[tuple[str, int, int]]
    """(plan label, devices per replica, replicas) of each plan in the fleet."""
    gpus: int
    boxes: int
    rate: float
    p50_s: float
    p95_s: float
    p99_s: float
    slo_attainment: float | None
    utilisation: float
    meets_slo: bool
    usd_per_hour: float | None = None
    usd_per_1000_images: float | None = None
    price_source: str | None = None
    batching: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return " + ".join(f"{count}×{label}" for label, _, count in self.mix if count)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


def price_fleet(fleet: FleetResult, cluster: ClusterGraph, prices: PriceTable | None) -> None:
    """Fill $/hour (every GPU rented at the table's per-GPU price) and $/1,000 images at the served rate."""
    if prices is None:
        return
    kinds = sorted(set(cluster.device_gpu.values()))
    entry = prices.price(kinds[0]) if len(kinds) == 1 else None
    if entry is None:
        fleet.price_source = f"no price for {kinds[0]} in the price table" if len(kinds) == 1 else None
        return
    fleet.usd_per_hour = fleet.gpus * entry.usd_per_gpu_hour
    fleet.usd_per_1000_images = fleet.usd_per_hour / (fleet.rate * 3600) * 1000 if fleet.rate > 0 else None
    fleet.price_source = f"{kinds[0]}: ${entry.usd_per_gpu_hour:g}/GPU-hour, {entry.source} ({entry.date})"


def simulate_fleet(services: list[tuple[PlanService, int]], requests: list[Request], *, routing: Routing,
                   slo_s: float | None, percentile: float, box_devices: int) -> FleetResult:
    replicas = [svc.replica() for svc, count in services for _ in range(count)]
    stats: ServingStats = serve(requests, replicas, routing=routing)
    tail = stats.percentile(percentile)
    return FleetResult(
        mix=[(svc.label, svc.devices, count) for svc, count in services],
        gpus=sum(svc.devices * count for svc, count in services),
        boxes=boxes_for([svc.devices for svc, count in services for _ in range(count)], box_devices),
        rate=offered_rate(requests), p50_s=stats.percentile(50), p95_s=stats.percentile(95),
        p99_s=stats.percentile(99), slo_attainment=stats.attainment(slo_s) if slo_s else None,
        utilisation=stats.mean_utilisation, meets_slo=slo_s is None or tail <= slo_s,
        batching=[f"{svc.label}: batch ≤ {svc.max_batch}" + (f" ({svc.batch_note})" if svc.batch_note else "")
                  for svc, _ in services if svc.max_batch > 1 or svc.batch_note])


def busy_s_per_request(service: PlanService, requests: list[Request]) -> float:
    """Mean seconds of replica time one request takes at the largest batch, over the requests' shapes."""
    counts: dict[tuple[int, int], int] = {}
    for r in requests:
        counts[r.shape] = counts.get(r.shape, 0) + 1
    per = service.requests_per_service
    return sum(n * service.service_s(shape, per) / per for shape, n in counts.items()) / len(requests)


def floor_replicas(service: PlanService, rate: float, requests: list[Request] | None = None) -> int:
    """Fewest replicas whose best throughput (largest batch, the requests' shapes) is above ``rate``."""
    busy = (busy_s_per_request(service, requests) if requests
            else service.service_s(service.shape, service.requests_per_service) / service.requests_per_service)
    return max(1, math.floor(rate * busy) + 1)


def size_for_slo(service: PlanService, requests: list[Request], *, slo_s: float | None, percentile: float = 99,
                 routing: Routing = "least-work", box_devices: int, max_replicas: int = 256) -> FleetResult | None:
    """Fewest replicas of ``service`` meeting the objective (the floor when there is none); None if none do."""
    if slo_s is not None and service.service_s(service.shape, 1) > slo_s:
        return None
    n = floor_replicas(service, offered_rate(requests), requests)
    while n <= max_replicas:
        fleet = simulate_fleet([(service, n)], requests, routing=routing, slo_s=slo_s, percentile=percentile,
                               box_devices=box_devices)
        if fleet.meets_slo:
            return fleet
        n += max(1, n // 8)
    return None


def size_mix(fast: PlanService, lean: PlanService, requests: list[Request], *, slo_s: float, percentile: float,
             routing: Routing, box_devices: int, max_fast: int = 8) -> FleetResult | None:
    """The fewest-GPU fleet of ``k`` replicas of ``fast`` (k ≥ 1) plus as many of ``lean`` as needed."""
    best: FleetResult | None = None
    rate = offered_rate(requests)
    for k in range(1, max_fast + 1):
        left = max(0.0, rate - k / busy_s_per_request(fast, requests))
        if left == 0:  # k fast replicas alone keep up: no longer a mix (the homogeneous search covers it)
            break
        m = floor_replicas(lean, left, requests)
        for _ in range(64):
            fleet = simulate_fleet([(fast, k), (lean, m)], requests, routing=routing, slo_s=slo_s,
                                   percentile=percentile, box_devices=box_devices)
            if fleet.meets_slo:
                break
            if best is not None and fleet.gpus >= best.gpus:
                break
            m += 1
        else:
            continue
        if fleet.meets_slo and (best is None or fleet.gpus < best.gpus):
            best = fleet
    return best


def rate_curve(services: list[tuple[PlanService, int]], make_requests: Callable[[float], list[Request]], *,
               routing: Routing, slo_s: float | None, box_devices: int,
               fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95)) -> list[dict[str, float]]:
    """p50/p99, SLO attainment and utilisation of one fleet as the offered rate rises to its capacity."""
    capacity = sum(count * svc.requests_per_service / svc.service_s(svc.shape, svc.requests_per_service)
                   for svc, count in services)
    points = []
    for f in fractions:
        fleet = simulate_fleet(services, make_requests(f * capacity), routing=routing, slo_s=slo_s, percentile=99,
                               box_devices=box_devices)
        points.append({"rate": f * capacity, "p50_s": fleet.p50_s, "p99_s": fleet.p99_s,
                       "utilisation": fleet.utilisation,
                       **({"slo_attainment": fleet.slo_attainment} if slo_s else {})})
    return points
