"""From a finished simulation to its result: latency breakdown, utilisation, memory, traffic, trace.

The breakdown is read off one *reference* stage group: the one busiest after the warm-up
(compute, embeddings, final layer and exposed communication together), i.e. the
bottleneck of the steady state. ``warmup`` is the wall time until the last warm-up step's
latent is back on stage 0 (of the reference group's replica); after it, the reference group's time is its compute, embed,
final, exposed communication, and ``bubble`` (waiting for input that was not sent yet).
``scheduler`` (the scheduler steps), ``overhead`` (pass and first-pass overheads) and
``vae`` (the decode at the end, on the decoding group) come from the cost model's optional
methods, 0 where it has none (listed in ``Prediction.unpriced``).
The keys sum to the latency.
"""

from __future__ import annotations

from typing import Protocol

from profiles.costs.cost_model import CostModel
from profiles.catalog.models import ModelPreset
from profiles.topology.graph import ClusterGraph
from simulator.memory import capacity_bytes, memory_per_device, oom_messages
from simulator.network import Network
from simulator.plan import ParallelPlan, Prediction
from simulator.result import SimEvent, SimulationResult
from simulator.trace import Trace, TraceEvent, TraceMeta, track_names
from simulator.workload import Workload


class FinishedRun(Protocol):
    """What the summary reads of a finished simulation (:class:`simulator.engine.Simulation`)."""

    plan: ParallelPlan
    model: ModelPreset
    cluster: ClusterGraph
    cost_model: CostModel
    work: Workload
    net: Network
    record: bool
    events: list[SimEvent]
    totals: dict[str, dict[str, float]]
    after_warmup: dict[str, dict[str, float]]
    warmup_end_s: dict[tuple[int, int], float]
    unpriced: set[str]
    finished_s: float

BUSY = ("embed", "compute", "final", "scheduler", "overhead", "vae")
BREAKDOWN_KEYS = ("warmup", "embed", "compute", "final", "scheduler", "overhead", "vae", "exposed_communication",
                  "bubble")


def breakdown(sim: FinishedRun, latency_s: float) -> dict[str, float]:
    actors = list(sim.work.actors)

    def warm_end(actor) -> float:
        if sim.work.warmup_steps >= sim.work.steps:
            return latency_s
        return min(sim.warmup_end_s.get((actor.data, actor.cfg), 0.0), latency_s)

    def busy(actor) -> float:
        after = sim.after_warmup[actor.label]
        return sum(after.get(k, 0.0) for k in (*BUSY, "exposed_communication"))

    ref = max(actors, key=lambda a: (busy(a), -actors.index(a)))
    warm = warm_end(ref)
    after = sim.after_warmup[ref.label] if warm < latency_s else {}
    out = {"warmup": warm}
    for key in ("embed", "compute", "final", "scheduler", "overhead"):
        out[key] = after.get(key, 0.0)
    # the decode ends the run on its own group; another reference group is waiting for it meanwhile
    out["vae"] = max((sim.totals[a.label].get("vae", 0.0) for a in actors), default=0.0) if warm < latency_s else 0.0
    out["exposed_communication"] = after.get("exposed_communication", 0.0)
    out["bubble"] = max(latency_s - warm - sum(out[k] for k in BREAKDOWN_KEYS[1:-1]), 0.0)
    return {key: out[key] for key in BREAKDOWN_KEYS}


def utilisation(sim: FinishedRun, latency_s: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for actor in sim.work.actors:
        busy = sum(sim.totals[actor.label].get(k, 0.0) for k in BUSY)
        for device in actor.devices:
            out[device] = busy / latency_s if latency_s > 0 else 0.0
    return {device: out[device] for device in sim.work.devices}


def build_trace(sim: FinishedRun, latency_s: float) -> Trace:
    events = track_names(len(sim.work.devices))
    for ev in sim.events:
        args = {"step": ev.step, "patch": ev.patch, "stage": ev.stage, **dict(ev.args)}
        if ev.step is not None:
            args["warmup"] = ev.step < sim.work.warmup_steps
        if ev.cat == "compute" and ev.stage is not None:
            layers = sim.plan.stage_layers(sim.model)[ev.stage]
            args["layers"] = f"{layers.start}-{layers.stop - 1}"
            args["layer"] = layers.start
        cat = {"exposed_communication": "collective", "bubble": "wait"}.get(ev.cat, ev.cat)
        if ev.name == "recv":
            cat = "recv"
        for rank in ev.ranks:
            events.append(TraceEvent(name=ev.name, cat=cat, ts=ev.start_s * 1e6, dur=(ev.end_s - ev.start_s) * 1e6,
                                     tid=rank, args={k: v for k, v in args.items() if v is not None}))
    meta = TraceMeta(source="simulated", model=sim.model.name,
                     plan=sim.plan.model_dump(mode="json", exclude={"prediction", "provenance"}),
                     device=sim.cost_model.name, latency_s=latency_s)
    return Trace(traceEvents=events, metadata=meta)


def build_result(sim: FinishedRun) -> SimulationResult:
    latency = float(sim.finished_s)
    memory = memory_per_device(sim.plan, sim.model, sim.cluster, dtype_bytes=sim.work.dtype_bytes)
    oom = oom_messages(memory, sim.cluster)
    prediction = Prediction(
        latency_s=latency,
        breakdown_s=breakdown(sim, latency),
        peak_memory_bytes={d: m.total for d, m in memory.items()},
        memory_capacity_bytes={d: capacity_bytes(sim.cluster, d) for d in memory},
        bytes_by_route_class=dict(sorted(sim.net.traffic.by_route_class.items())),
        throughput_images_per_s=sim.plan.degrees.images_per_generation() / latency if latency > 0 else 0.0,
        cost_model=sim.cost_model.name,
        unpriced=sorted(sim.unpriced),
    )
    return SimulationResult(prediction=prediction, fits=not oom, oom=oom, utilisation=utilisation(sim, latency),
                            memory=memory, traffic=sim.net.traffic, events=list(sim.events),
                            trace=build_trace(sim, latency) if sim.record else None)
