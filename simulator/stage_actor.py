"""The simpy process of one stage group: PipeFusion's displaced patch pipeline, which every plan
runs (one stage when the pipeline is off), in the unit order of :mod:`simulator.schedule`.

It lives on the engine's side of the strategies (the pipeline strategy's rules and costs are
:mod:`simulator.strategies.pipefusion`) and reaches the simulation only through the
:class:`StageRunner` protocol, so it imports no engine. Each stage group is one simpy actor that works through its items in order: the whole image
in each of the ``W`` synchronous warm-up steps, then patch ``m`` of step ``t`` for every
later step. An item starts on stage ``d`` when its input has arrived: from stage ``d−1``
(the patch's activations), or, on stage 0, the patch's latent sent back by the last stage
after its scheduler step of step ``t−1``. Sends are asynchronous, so with free communication
stage ``d`` runs patch ``m`` of step ``t`` at micro-step ``t·M + m + d`` (after warm-up),
the pipeline fills once per image when ``M ≥ N`` and idles when ``M < N``. With ``W = T``
every step is a synchronous full-image pass through the stages: no staleness benefit.

Stage 0 also runs the embeddings, the last stage the final layer, the CFG exchange (when
CFG parallel) and the scheduler step. Every pass pays the cost model's pass overhead, each
actor's first pass its first-pass (cold) overhead, and the last stage of the first CFG
group decodes the image with the VAE after its last step. HunyuanDiT's long skips are extra sends from the stage of
a skip's source block to the stage of its mirror block, which waits for them.
"""

from __future__ import annotations

from typing import Any, Generator, Protocol

import simpy

from profiles.catalog.models import ModelPreset
from simulator.result import PassCost
from simulator.schedule import Unit, latent_source_of
from simulator.strategies.cfg import latent_bytes, prediction_bytes
from simulator.workload import Actor, Workload


class StageRunner(Protocol):
    """What a stage actor asks of the simulation (:class:`simulator.engine.Simulation` provides it)."""

    env: simpy.Environment
    work: Workload
    model: ModelPreset

    unit_count: int
    position: dict[str, int]
    where: dict[str, tuple]

    def unit(self, index: int) -> Unit: ...
    def step_began(self, step: int, index: int) -> None: ...
    def check_work_left(self, actor: Actor, index: int) -> None: ...
    def event(self, key: tuple) -> simpy.Event: ...
    def record_wait(self, actor: Actor, start: float, end: float, sent_at: float, **tags: Any) -> None: ...
    def pass_cost(self, stage: int, item: int | None, *, warmup: bool, first: bool = False) -> PassCost: ...
    def compute(self, actor: Actor, seconds: float, cat: str, name: str, **tags: Any) -> Generator: ...
    def computes(self, actor: Actor, step: int, parts: tuple[tuple[float, str, str], ...]) -> Generator: ...
    record: bool
    def first_pass_s(self) -> float: ...
    def setup_s(self) -> float: ...
    def vae_s(self) -> float: ...
    def stage_pass(self, actor: Actor, cost: PassCost, **tags: Any) -> Generator: ...
    def post_send(self, actor: Actor, peer: Actor, nbytes_per_rank: int, key: tuple, name: str,
                  **tags: Any) -> Generator: ...
    def cfg_exchange(self, actor: Actor, nbytes: int, **tags: Any) -> Generator: ...
    charges_message_cpu: bool
    def receive_cpu_s(self, actor: Actor, sources: list[int]) -> float: ...
    def message_time(self, actor: Actor, seconds: float, name: str, **tags: Any) -> Generator: ...


def input_key(actor: Actor, stage: int, step: int, item: int | None) -> tuple:
    return ("in", actor.data, actor.cfg, stage, step, item)


def return_key(actor: Actor, step: int, item: int | None) -> tuple:
    return ("ret", actor.data, actor.cfg, step, item)


def skip_key(actor: Actor, src: int, dst: int, step: int, item: int | None) -> tuple:
    return ("skip", actor.data, actor.cfg, src, dst, step, item)


def cfg_key(actor: Actor, step: int, item: int | None) -> tuple:
    return ("cfg", actor.data, actor.cfg, step, item)


def dependencies(sim: StageRunner, actor: Actor, step: int, item: int | None,
                 sources: list[int] | None = None) -> list:
    """The events item (step, item) waits for on ``actor``'s stage; the stage each comes from is appended
    to ``sources`` when one is given (only where messages' CPU is charged: this runs once per unit)."""
    work = sim.work
    deps = []
    if actor.stage == 0:
        source = latent_source_of(step, item, work.warmup_steps, work.patches)
        if source is not None:
            deps.append(sim.event(return_key(actor, *source)))
            if sources is not None:
                sources.append(work.stages - 1)
    else:
        deps.append(sim.event(input_key(actor, actor.stage, step, item)))
        if sources is not None:
            sources.append(actor.stage - 1)
    for (src, dst) in work.skip_layers:
        if dst == actor.stage:
            deps.append(sim.event(skip_key(actor, src, dst, step, item)))
            if sources is not None:
                sources.append(src)
    return deps


def stage_actor(sim: StageRunner, actor: Actor) -> Generator:
    """The simpy process of one stage group."""
    env, work = sim.env, sim.work
    last = work.stages - 1
    label = actor.label
    watched = actor is work.actors[0]
    charges_messages = sim.charges_message_cpu and work.stages > 1
    # every rank sets its image up at once after the start barrier, before it waits on any input
    yield from sim.compute(actor, sim.setup_s(), "overhead", "image set-up", step=0, patch=None, stage=actor.stage)
    index = -1
    while index + 1 < sim.unit_count:  # read each time: the run may be cut short (simulator.periodic)
        index += 1
        unit = sim.unit(index)
        step, item = unit.step, unit.patch
        sim.position[label] = index
        sim.where[label] = ("deps", env.now)
        if item in (None, 0):
            if watched:
                sim.step_began(step, index)
            sim.check_work_left(actor, index)  # a run that can no longer win stops here (simulator.work_left)
        tags = {"step": step, "patch": item, "stage": actor.stage}
        sources: list[int] | None = [] if charges_messages else None
        deps = dependencies(sim, actor, step, item, sources)
        if deps:
            waited_from = env.now
            yield deps[0] if len(deps) == 1 else env.all_of(deps)  # one input: no condition event
            sent_at = max(e.value for e in deps)
            sim.record_wait(actor, waited_from, env.now, sent_at, **tags)
            if sources:  # the receiver's own time on the messages it takes (where measured)
                yield from sim.message_time(actor, sim.receive_cpu_s(actor, sources), "receive (CPU)", **tags)
        cost = sim.pass_cost(actor.stage, item, warmup=step < work.warmup_steps, first=step == 0)
        if not sim.record and not cost.specs:  # nothing between them can interact: one timer
            yield from sim.computes(actor, step, (
                (sim.first_pass_s() if index == 0 else 0.0, "overhead", "first pass"),
                (cost.embed_s if actor.stage == 0 else 0.0, "embed", "embed"),
                (cost.compute_s, "compute", "blocks"),
                (cost.overhead_s, "overhead", "pass overhead")))
        else:
            if index == 0:
                yield from sim.compute(actor, sim.first_pass_s(), "overhead", "first pass", **tags)
            if actor.stage == 0:
                yield from sim.compute(actor, cost.embed_s, "embed", "embed", **tags)
            yield from sim.stage_pass(actor, cost, **tags)
            yield from sim.compute(actor, cost.overhead_s, "overhead", "pass overhead", **tags)
        tokens = cost.local_query_tokens
        activation = tokens * work.hidden * work.batch * work.dtype_bytes
        for (src, dst), count in work.skip_layers.items():
            if src == actor.stage:
                peer = work.actor(actor.data, actor.cfg, dst)
                yield from sim.post_send(actor, peer, activation * count, skip_key(actor, src, dst, step, item),
                                         "skip", **tags)
        if actor.stage < last:
            peer = work.actor(actor.data, actor.cfg, actor.stage + 1)
            yield from sim.post_send(actor, peer, activation, input_key(actor, actor.stage + 1, step, item),
                                    "activations", **tags)
            continue
        if work.degrees["cfg"] > 1:
            yield from sim.compute(actor, cost.final_s, "final", "final", **tags)
            yield from sim.cfg_exchange(actor, prediction_bytes(sim.model, tokens, work.dtype_bytes), **tags)
            yield from sim.compute(actor, cost.scheduler_s, "scheduler", "scheduler", **tags)
        elif sim.record:
            yield from sim.compute(actor, cost.final_s, "final", "final", **tags)
            yield from sim.compute(actor, cost.scheduler_s, "scheduler", "scheduler", **tags)
        else:
            yield from sim.computes(actor, step, ((cost.final_s, "final", "final"),
                                                  (cost.scheduler_s, "scheduler", "scheduler")))
        latent = latent_bytes(sim.model, tokens, work.dtype_bytes)
        peer = work.actor(actor.data, actor.cfg, 0)
        yield from sim.post_send(actor, peer, latent, return_key(actor, step, item), "latent", **tags)
    if actor.stage == last and actor.cfg == 0:
        yield from sim.compute(actor, sim.vae_s(), "vae", "vae decode", stage=actor.stage)
