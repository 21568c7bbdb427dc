"""The simpy engine: runs a plan's schedule on the topology's links and reports what would happen.

:func:`simulate` builds the :class:`~simulator.workload.Workload`, one simpy actor per stage
group (see :mod:`simulator.stage_actor`), and a :class:`~simulator.network.Network`
of link resources; compute times come only from the cost model: ``layer_time_s``, and where
the cost model has them (:data:`OPTIONAL_COSTS`; a missing method or a None answer prices
0 and is listed in ``Prediction.unpriced``) the scheduler step, the pass overheads and the
VAE decode. Each
actor records what it did when (compute, embeddings, final layer, exposed communication,
waiting); from that the engine derives the latency, its breakdown, utilisation, traffic
and, on request, a Chrome trace. Time is in seconds throughout (``TIME_UNIT_S``). The same
inputs give the same event log: simpy orders simultaneous events by creation order, and
nothing here is random.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Generator

import simpy

from profiles.costs.cost_model import EMBED, FINAL, CostModel, LayerShape
from profiles.costs.flops import attention_flops, layer_flops
from profiles.catalog.models import ModelPreset
from profiles.topology.graph import ClusterGraph
from simulator import collectives
from simulator.deadline import Deadline, arm
from simulator.errors import SimulatorError
from simulator.limits import MAX_DIRECT_PASSES
from simulator.network import NETWORK_MODELS, FairShareNetwork, LinkFit
from simulator.periodic import NotSettled, Snapshot, StepWatch, extend
from simulator.plan import ParallelPlan, validate
from simulator.result import PassCost, SimEvent, SimulationResult
from simulator.schedule import Unit, row_bounds, unit_at, unit_count
from simulator.stage_actor import cfg_key, stage_actor
from simulator.strategies import STRATEGIES
from simulator.strategies.base import CollectiveSpec, PassWork, Strategy, split_by_overlap
from simulator.strategies.cfg import prediction_bytes
from simulator.summary import build_result
from simulator.work_left import SLACK as WORK_LEFT_SLACK
from simulator.work_left import WorkLeft
from simulator.workload import Actor, Workload, build_workload

TIME_UNIT_S = 1.0
"""simpy time is in seconds."""

OPTIONAL_COSTS = ("scheduler_step_time_s", "pass_overhead_s", "first_pass_overhead_s", "image_setup_time_s",
                  "vae_decode_time_s")
"""Cost-model methods beyond ``layer_time_s`` the engine uses when they exist (see :class:`CostModel`)."""

@dataclass(frozen=True)
class SimSettings:
    """How to run the simulation, beside what it runs (plan, model, cluster, cost model)."""

    record: bool = False
    """Keep every event and build a Chrome trace."""
    bandwidth_scale: float = 1.0
    dtype_bytes: int = 2
    network_model: str = "fair"
    """``"fair"`` (links shared equally by concurrent transfers) or ``"fifo"`` (see :mod:`simulator.network`)."""
    link_fits: dict[str, LinkFit] | None = None
    """Measured latency and bandwidth per route class, in place of the topology's figures."""


@dataclass
class PriceCache:
    """Prices shared by every plan of one search (same model, cluster and cost model): a layer
    shape, an optional cost or a stage pass is priced once, however many plans ask for it."""

    layers: dict[LayerShape, float] = field(default_factory=dict)
    optional: dict[tuple, float] = field(default_factory=dict)
    passes: dict[tuple, PassCost] = field(default_factory=dict)
    unpriced: set[tuple] = field(default_factory=set)
    """Keys of ``optional`` the cost model could not answer."""
    bounds: dict[tuple, float] = field(default_factory=dict)
    """Every block of the model once over a query size, per sharding (the search's compute bound)."""
    route_figures: dict[tuple, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    """(placement class of a device group, link fits) → the distinct (latency s, bytes/s) of the routes between its members."""


class Pricing:
    """What a plan's passes cost (cost model calls, strategies' shards and collectives), without simpy.

    :class:`Simulation` runs these prices through the event simulation; the closed-form
    estimate (:mod:`simulator.estimate`) and the search's bounds use them alone. ``cache``
    shares prices between plans of one model, cluster and cost model.
    """

    def __init__(self, plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel,
                 settings: SimSettings = SimSettings(), *, cache: PriceCache | None = None) -> None:
        self.plan, self.model, self.cluster, self.cost_model = plan, model, cluster, cost_model
        self.settings = settings
        self.work: Workload = build_workload(plan, model, cluster, dtype_bytes=settings.dtype_bytes)
        self.strategies: list[tuple[Strategy, int]] = STRATEGIES.active(self.work.degrees)
        """Every axis above 1 with its degree, in rank order: each shards the pass and adds its collectives."""
        shared = cache if cache is not None else PriceCache()
        self._costs: dict[tuple, PassCost] = {}
        self._shared_passes = shared.passes
        self._layer_costs: dict[LayerShape, float] = shared.layers
        self._optional: dict[tuple, float] = shared.optional
        self._unpriced_shared = shared.unpriced
        self.route_figures = shared.route_figures
        self.unpriced: set[str] = set()
        self._degree_key = tuple(sorted((s.axis, n) for s, n in self.strategies if s.axis))

    # -- costs ----------------------------------------------------------------------------
    def _layer_s(self, shape: LayerShape) -> float:
        for strategy, degree in self.strategies:
            shape = strategy.shard(shape, degree)
        t = self._layer_costs.get(shape)
        if t is None:
            t = self._layer_costs[shape] = float(self.cost_model.layer_time_s(shape))
        return t

    def optional_s(self, method: str, *args: Any) -> float:
        """Seconds from an optional cost-model method; 0 (and noted as unpriced) when it is absent or unknown."""
        key = (method, *args)
        value = self._optional.get(key)
        if value is None:
            fn = getattr(self.cost_model, method, None)
            answer = fn(*args) if fn is not None else None
            if answer is None:
                self._unpriced_shared.add(key)
            value = self._optional[key] = float(answer or 0.0)
        if key in self._unpriced_shared:
            self.unpriced.add(method)
        return value

    def _embed_s(self, q: int, b: int) -> float:
        """The embed of a pass over ``q`` of the image's tokens, as the rank runs it: where the family's
        runtime embeds the whole latent and cuts its share (``FamilySpec.patch_embed``), every share pays
        the whole image's embed (at the rank's batch); else the share's own tokens."""
        if getattr(self.model.arch.spec, "patch_embed", "rows") == "rows":
            return self._layer_s(LayerShape(EMBED, q, q, b))
        shape = LayerShape(EMBED, q, q, b)
        for strategy, degree in self.strategies:
            shape = strategy.shard(shape, degree)
        image = self.work.image_tokens
        shape = replace(shape, query_tokens=image, kv_tokens=image, text_query_tokens=None)
        t = self._layer_costs.get(shape)
        if t is None:
            t = self._layer_costs[shape] = float(self.cost_model.layer_time_s(shape))
        return t

    def pass_overhead_s(self, blocks: int, batch: int, patch_tokens: int | None) -> float:
        """A pass's overhead beyond its layers: a PipeFusion patch pass (``patch_tokens``) at the cost
        model's patch loop figure where it has one, else (and for whole-image passes) ``pass_overhead_s``."""
        if patch_tokens is not None:
            key = ("patch_pass_overhead_s", blocks, batch, patch_tokens)
            value = self._optional.get(key)
            if value is None:
                fn = getattr(self.cost_model, "patch_pass_overhead_s", None)
                answer = fn(blocks, batch, patch_tokens) if fn is not None else None
                value = self._optional[key] = -1.0 if answer is None else float(answer)
            if value >= 0.0:
                return value
        return self.optional_s("pass_overhead_s", blocks, batch)

    def first_pass_s(self) -> float:
        return self.optional_s("first_pass_overhead_s", self.work.batch)

    def setup_s(self) -> float:
        return self.optional_s("image_setup_time_s")

    def vae_s(self) -> float:
        return self.optional_s("vae_decode_time_s", self.plan.height_px, self.plan.width_px)

    def pass_cost(self, stage: int, item: int | None, *, warmup: bool, first: bool = False) -> PassCost:
        """Price one pass of ``stage`` over ``item``; ``first``: the generation's first step."""
        key = (stage, item, warmup, first)
        cost = self._costs.get(key)
        if cost is not None:
            return cost
        work = self.work
        q, k, b = work.tokens(item), work.image_tokens, work.batch
        last = stage == work.stages - 1
        patch = item is not None
        shared_key = (self._degree_key, work.stage_kinds[stage], q, k, b, warmup, first, stage == 0, last,
                      work.hidden, work.dtype_bytes, patch)
        cost = self._shared_passes.get(shared_key)
        if cost is not None:
            if last:
                self.optional_s("scheduler_step_time_s", q)  # notes it as unpriced for this plan too
            self.pass_overhead_s(len(work.stage_kinds[stage]), b, q if patch else None)
            self._costs[key] = cost
            return cost
        compute = sum(self._layer_s(LayerShape(kind, q, k, b)) for kind in work.stage_kinds[stage])
        embed = self._embed_s(q, b) if stage == 0 else 0.0
        final = self._layer_s(LayerShape(FINAL, q, q, b)) if stage == work.stages - 1 else 0.0
        local = LayerShape(work.stage_kinds[stage][0], q, k, b)
        for strategy, degree in self.strategies:
            local = strategy.shard(local, degree)
        pw = PassWork(q, k, b, len(work.stage_kinds[stage]), work.hidden, work.dtype_bytes, warmup,
                      prediction_bytes(self.model, q, work.dtype_bytes) if stage == work.stages - 1 else 0,
                      self._attention_share(stage, q, k, b),
                      first, self.model.arch.tensor_all_reduces(work.stage_kinds[stage]), self.model.text_tokens)
        overlap = self.cluster.topology.communication.overlap_efficiency
        specs = tuple(part for strategy, degree in self.strategies
                      for spec in strategy.collectives(pw, degree, local.query_tokens)
                      for part in split_by_overlap(spec, overlap))
        scheduler = self.optional_s("scheduler_step_time_s", q) if stage == work.stages - 1 else 0.0
        overhead = self.pass_overhead_s(len(work.stage_kinds[stage]), b, q if patch else None) \
            + sum(strategy.extra_compute_s(pw, degree, local.query_tokens, self.optional_s)
                  for strategy, degree in self.strategies)
        cost = self._costs[key] = self._shared_passes[shared_key] = PassCost(
            compute, embed, final, local.query_tokens, specs, scheduler, overhead)
        return cost

    def _attention_share(self, stage: int, q: int, k: int, b: int) -> float:
        """Attention-over-image-K/V FLOPs / all FLOPs of the stage's blocks, per rank (any cost model).
        A stage repeats a few block kinds: each kind's FLOPs are counted once, summed in block order."""
        arch, text = self.model.arch, self.model.text_tokens
        attention = total = 0.0
        flops: dict[str, tuple[float, float]] = {}
        for kind in self.work.stage_kinds[stage]:
            counted = flops.get(kind)
            if counted is None:
                shape = LayerShape(kind, q, k, b)
                for strategy, degree in self.strategies:
                    shape = strategy.shard(shape, degree)
                counted = flops[kind] = (attention_flops(arch, shape, text_tokens=text),
                                         layer_flops(arch, shape, text_tokens=text))
            attention += counted[0]
            total += counted[1]
        return min(attention / total, 1.0) if total > 0 else 0.0


class Simulation(Pricing):
    """One run: the environment, the network, the actors' records. Not reusable across runs."""

    stop_after_s: float | None = None
    """Raise :class:`~simulator.deadline.SlowerThan` once the run cannot end before this: its clock
    reached it unfinished, or a stage group's remaining timers would (:func:`simulate`)."""
    _deadline: Deadline | None = None
    _work_left: WorkLeft | None = None

    def __init__(self, plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel,
                 settings: SimSettings = SimSettings(), *, cache: PriceCache | None = None,
                 watch: bool = False, give_up: bool = False) -> None:
        super().__init__(plan, model, cluster, cost_model, settings, cache=cache)
        self.env = simpy.Environment()
        if settings.network_model not in NETWORK_MODELS:
            raise SimulatorError(f"unknown network model {settings.network_model!r}; "
                                 f"models: {', '.join(NETWORK_MODELS)}", field="network_model")
        self.net = NETWORK_MODELS[settings.network_model](self.env, cluster, bandwidth_scale=settings.bandwidth_scale,
                                                          link_fits=settings.link_fits)
        self.record = settings.record
        self.compute_scale, self.vae_scale = corun_scales(plan, cluster, cost_model)
        self.events: list[SimEvent] = []
        self.totals: dict[str, dict[str, float]] = {a.label: {} for a in self.work.actors}
        self.after_warmup: dict[str, dict[str, float]] = {a.label: {} for a in self.work.actors}
        self.warmup_end_s: dict[tuple[int, int], float] = {}
        """(data, cfg) replica → when its last warm-up latent was back on stage 0."""
        self._events: dict[tuple, simpy.Event] = {}
        self._groups: dict[tuple[str, str], list[list[str]]] = {}
        self._sends: list[simpy.Event] = []
        """Sends the generation must wait for: processes, or round events of the fair-share network."""
        self.finished_s = 0.0
        work = self.work
        self._bounds = row_bounds([t // work.cols for t in work.patch_tokens])
        self._per_step = 1 if work.patches == 1 else work.patches
        self._units: dict[int, Unit] = {}
        self._overlapped: dict[int, tuple[CollectiveSpec, ...]] = {}
        """id(pass cost) → its overlapped collectives, latest-starting last (:meth:`stage_pass`)."""
        self.unit_count = self._units_for(work.steps)
        """Units every stage runs (:meth:`stop_after` may shorten it)."""
        self.position: dict[str, int] = {}
        """Actor label → index of the unit it is on."""
        self.where: dict[str, tuple] = {}
        """Actor label → what it waits in now and since when (:mod:`simulator.periodic` reads it)."""
        self._bg: dict[str, list[simpy.Process]] = {}
        self._own: dict[str, simpy.Process] = {}
        self._inflight: dict[int, tuple[tuple, simpy.Event]] = {}
        """Sends started without a process, not yet arrived: id(done) → (owner, done)."""
        self._pairs: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        self._message_cpu: dict[tuple[str, str], tuple[float, float, float]] = {}
        """(sender, receiver) labels → their message's (sender CPU, receiver CPU, latency share)."""
        self.charges_message_cpu = any(fit.send_cpu_s > 0 or fit.recv_cpu_s > 0
                                         for fit in getattr(self.net, "link_fits", {}).values())
        """Whether any route has it (else every lookup is skipped: large simulations have none)."""
        self._held_share = 1.0 - cluster.topology.communication.overlap_efficiency
        """Share of a send's bytes that holds the sender (:meth:`post_send`), looked up once."""
        self._start_round = None if self.record else getattr(self.net, "start_round", None)
        """The network's one-event round (the fair-share network's), or None: sends run as processes."""
        self.watch: StepWatch | None = None
        if watch and not self.record and isinstance(self.net, FairShareNetwork) and not self.net.curves:
            self.watch = StepWatch(self, give_up=give_up)

    # -- the schedule, lazily (a million steps of patches is not built as a list) ---------------------
    def _units_for(self, steps: int) -> int:
        return unit_count(steps, self.work.warmup_steps, self._per_step)

    def unit(self, index: int) -> Unit:
        """The ``index``-th unit of every stage's schedule (:func:`simulator.schedule.unit_at`), built
        once for all stage groups (each asks for every index)."""
        unit = self._units.get(index)
        if unit is None:
            unit = self._units[index] = unit_at(index, self.work.warmup_steps, self._bounds)
        return unit

    def stop_after(self, steps: int) -> None:
        """Run only the first ``steps`` steps (the steady state was found; :func:`simulator.periodic.extend`)."""
        self.unit_count = self._units_for(steps)

    def step_began(self, step: int, index: int) -> None:
        watch = self.watch
        if watch is not None:
            found = watch.found
            watch.step_began(step, index)
            if found is None and watch.found is not None and self._deadline is not None and not watch.give_up:
                self._settled_bound(*watch.found)

    def _settled_bound(self, before: Snapshot, now: Snapshot) -> None:
        """Stop a run with a limit once its steady state shows it cannot end before it.

        From the step start ``k`` at which the state repeats, every step start comes one period ``Δ``
        after the one before, in the whole run as in the cut one, and the state at each is the state
        at ``k`` shifted (:mod:`simulator.periodic`). So the last step, ``T − 1``, starts at
        ``now + (T − 1 − k)·Δ`` with every stage group ``(T − 1 − k)`` steps of units further on, and
        the run cannot end before that plus the timers a group still has from there
        (:mod:`simulator.work_left`; a group other than the first may be inside its unit: counted from
        its next). The rest of the cut run (a third of a 20-stage run's time on 512 L40s) need not be
        simulated when that is already past the limit."""
        left, work = self._work_left, self.work
        if left is None:
            return
        ahead = work.steps - 1 - now.step
        last_start = now.now + ahead * (now.now - before.now)
        shift = self._units_for(work.steps - 1) - self._units_for(now.step)
        first = work.actors[0]
        least = 0.0
        for actor in work.actors:
            index = self.position[actor.label] + shift + (actor is not first)
            if index >= left.units:
                # a group would have run out of units before the last step starts: the end of the run may
                # then change the others' timeline (a data replica ahead by a step), so no bound
                return
            least = max(least, left.least_s(actor, index))
        self._stop_if_past(last_start + least)

    # -- bookkeeping ----------------------------------------------------------------------
    def event(self, key: tuple) -> simpy.Event:
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = self.env.event()
        return ev

    def note(self, actor: Actor, start: float, end: float, cat: str, name: str, **tags: Any) -> None:
        """Account ``[start, end)`` to ``cat`` on ``actor`` (and keep the event when recording)."""
        step = tags.pop("step", None)
        self._tally(actor, start, end, cat, step)
        if self.record and end > start:
            patch, stage = tags.pop("patch", None), tags.pop("stage", None)
            self.events.append(SimEvent(start, end, actor.label, cat, name, step, patch, stage, actor.ranks,
                                        tuple(sorted(tags.items()))))

    def record_wait(self, actor: Actor, start: float, end: float, sent_at: float, **tags: Any) -> None:
        """Split a wait for input into bubble (the data was not sent yet) and exposed communication."""
        split = min(max(sent_at, start), end)
        if not self.record:
            self._tally(actor, start, split, "bubble", tags.get("step"))
            self._tally(actor, split, end, "exposed_communication", tags.get("step"))
            return
        self.note(actor, start, split, "bubble", "wait", **dict(tags))
        self.note(actor, split, end, "exposed_communication", "recv", **dict(tags))

    # -- actions (simpy generators) ---------------------------------------------------------
    def compute(self, actor: Actor, seconds: float, cat: str, name: str, **tags: Any) -> Generator:
        if seconds <= 0:
            return
        seconds *= self.vae_scale if cat == "vae" else self.compute_scale
        start = self.env.now
        self.where[actor.label] = (name, start)
        yield self.env.timeout(seconds)
        self.note(actor, start, self.env.now, cat, name, **tags)

    def computes(self, actor: Actor, step: int, parts: tuple[tuple[float, str, str], ...]) -> Generator:
        """``(seconds, cat, name)`` back to back under one timer (not while recording: a trace keeps
        :meth:`compute`'s events). Each part is accounted as :meth:`compute` would; its bounds are
        summed from the start, so they may differ from the chained timers' in the last bit."""
        scale = self.compute_scale
        seconds = [(s * (self.vae_scale if cat == "vae" else scale), cat) for s, cat, _ in parts if s > 0]
        if not seconds:
            return
        start = self.env.now
        self.where[actor.label] = ("computes", tuple(name for s, _, name in parts if s > 0), start)
        total = 0.0
        for s, _ in seconds:
            total += s
        yield self.env.timeout(total)
        t = start
        for s, cat in seconds:
            self._tally(actor, t, t + s, cat, step)
            t += s

    def _tally(self, actor: Actor, start: float, end: float, cat: str, step: int | None) -> None:
        """Add ``[start, end)`` to ``cat`` in the actor's totals (and after its warm-up, the part past it)."""
        if end > start:
            totals = self.totals[actor.label]
            totals[cat] = totals.get(cat, 0.0) + end - start
            if step is None or step >= self.work.warmup_steps:
                warm_end = self.warmup_end_s.get((actor.data, actor.cfg), 0.0)
                clipped = warm_end if warm_end > start else start  # max(start, warm_end), without the call
                if end > clipped:
                    after = self.after_warmup[actor.label]
                    after[cat] = after.get(cat, 0.0) + end - clipped

    def collective(self, actor: Actor, spec: CollectiveSpec, owner: tuple = ()) -> Generator:
        algorithm = collectives.ALGORITHMS[spec.kind].run
        key = (actor.label, spec.axis)
        groups = self._groups.get(key)
        if groups is None:
            groups = self._groups[key] = [g for g in self.work.inner_groups(actor, spec.axis) if len(g) > 1]
        if len(groups) == 1:
            self.net.owner = owner
            yield from algorithm(self.net, groups[0], spec.bytes_per_rank, spec.messages)
        elif groups:
            yield self.env.all_of([self.env.process(self._owned(owner + (i,), algorithm(
                self.net, g, spec.bytes_per_rank, spec.messages))) for i, g in enumerate(groups)])

    def _owned(self, owner: tuple, process: Generator) -> Generator:
        """``process``, naming ``owner`` to the network for the transfers it starts."""
        self.net.owner = owner
        yield from process

    def stage_pass(self, actor: Actor, cost: PassCost, **tags: Any) -> Generator:
        """Compute the pass; overlapped collectives start ``(1−f)·C`` in and hide behind the rest.

        A collective with overlap fraction ``f`` therefore sticks out by ``max(0, comm − f·C)``
        (see :attr:`CollectiveSpec.overlap_fraction`); blocking ones run after the compute.
        """
        env = self.env
        start = env.now
        label = actor.label
        background: list[simpy.Process] = []
        self._bg[label] = background
        elapsed = 0.0
        compute_s = cost.compute_s * self.compute_scale
        overlapped = self._overlapped.get(id(cost))
        if overlapped is None:  # the costs live in self._costs for the whole run: their ids are stable
            overlapped = self._overlapped[id(cost)] = tuple(
                sorted((s for s in cost.specs if s.overlapped), key=lambda s: -s.overlap_fraction))
        for spec in overlapped:
            begin = (1.0 - spec.overlap_fraction) * compute_s
            if begin > elapsed:
                self.where[label] = ("pass", len(background), start)
                yield env.timeout(begin - elapsed)
                elapsed = begin
            background.append(env.process(self.collective(actor, spec, (label, "bg", len(background)))))
        self.where[label] = ("pass-end", start)
        yield env.timeout(max(compute_s - elapsed, 0.0))
        record, step = self.record, tags.get("step")
        if record:
            self.note(actor, start, env.now, "compute", "blocks", **dict(tags))
        else:
            self._tally(actor, start, env.now, "compute", step)
        if background:
            waited = env.now
            self.where[label] = ("pass-bg", waited)
            yield env.all_of(background)
            if record:
                self.note(actor, waited, env.now, "exposed_communication", "overlapped-collective", **dict(tags))
            else:
                self._tally(actor, waited, env.now, "exposed_communication", step)
        for i, spec in enumerate(cost.specs):
            if not spec.overlapped:
                began = env.now
                self.where[label] = ("pass-blk", i, began)
                yield from self.collective(actor, spec, (label, "blk", i))
                if record:
                    self.note(actor, began, env.now, "exposed_communication", f"{spec.kind}:{spec.axis}",
                              **dict(tags), bytes=int(spec.bytes_per_rank))
                else:
                    self._tally(actor, began, env.now, "exposed_communication", step)

    def send(self, actor: Actor, peer: Actor, nbytes_per_rank: int, key: tuple, name: str, *,
             began_s: float | None = None, held_bytes: int = 0, **tags: Any) -> Generator:
        """Point-to-point from each rank of ``actor`` to the same-position rank of ``peer``; then fire ``key``.

        ``began_s``/``held_bytes``: the send started earlier with ``held_bytes`` that held the
        sender (:meth:`post_send`); the event and the trace count the whole send from then.
        """
        start = self.env.now if began_s is None else began_s
        pairs = list(zip(actor.devices, peer.devices))
        yield from collectives.exchange(self.net, pairs, nbytes_per_rank, self.message_cpu(actor, peer)[2])
        if self.record and self.env.now > start:
            route = self.cluster.route(*pairs[0])
            self.events.append(SimEvent(start, self.env.now, actor.label, "send", name, tags.get("step"),
                                        tags.get("patch"), tags.get("stage"), actor.ranks,
                                        (("bytes", nbytes_per_rank + held_bytes), ("peer", peer.ranks[0]),
                                         ("route_class", route.route_class))))
        self.event(key).succeed(start)
        if key[0] == "ret" and key[3] == self.work.warmup_steps - 1:
            self.warmup_end_s[(actor.data, actor.cfg)] = self.env.now

    def _send_now(self, actor: Actor, peer: Actor, nbytes_per_rank: int, key: tuple, *, began_s: float) -> bool:
        """:meth:`send` without a process of its own, on a network that starts a round as one event
        (the fair-share one); False when it cannot (the caller spawns :meth:`send`)."""
        start_round = self._start_round
        if start_round is None:
            return False
        moves = self._moves(actor, peer)
        owner = ("send", actor.label, key, began_s)
        self.net.owner = owner
        share = self.message_cpu(actor, peer)[2]
        done = start_round(moves, int(nbytes_per_rank), share, done=self.event(key), value=began_s) if moves else None
        if done is None:
            self._arrived(actor, key, began_s)
            return True
        if self.watch is not None:
            self._inflight[id(done)] = (owner, done)
        done.callbacks.insert(0, lambda ev: self._landed(actor, key, ev))  # before the receiver resumes
        self._sends.append(done)
        return True

    def _landed(self, actor: Actor, key: tuple, done: simpy.Event) -> None:
        """A send the network fired on its own input event has arrived: its bookkeeping."""
        self._inflight.pop(id(done), None)
        if key[0] == "ret" and key[3] == self.work.warmup_steps - 1:
            self.warmup_end_s[(actor.data, actor.cfg)] = self.env.now

    def _moves(self, actor: Actor, peer: Actor) -> tuple[tuple[str, str], ...]:
        """Same-position rank pairs of two stage groups on different devices (built once per pair; a
        tuple, so the network keys its round on it without copying)."""
        pair = (actor.label, peer.label)
        moves = self._pairs.get(pair)
        if moves is None:
            moves = self._pairs[pair] = tuple((a, b) for a, b in zip(actor.devices, peer.devices) if a != b)
        return moves

    def message_cpu(self, actor: Actor, peer: Actor) -> tuple[float, float, float]:
        """(sender CPU s, receiver CPU s, latency share) of a stage message from ``actor`` to ``peer``
        (:meth:`~simulator.network.Network.message_cpu` of the route of its first rank pair; none
        when the groups share their devices), looked up once per pair."""
        if not self.charges_message_cpu:
            return 0.0, 0.0, 1.0
        pair = (actor.label, peer.label)
        out = self._message_cpu.get(pair)
        if out is None:
            moves = self._moves(actor, peer)
            out = self._message_cpu[pair] = (self.net.message_cpu(self.cluster.route(*moves[0])) if moves
                                             else (0.0, 0.0, 1.0))
        return out

    def receive_cpu_s(self, actor: Actor, sources: list[int]) -> float:
        """The receiver's CPU of the messages into ``actor`` from the stages ``sources`` (one each; none from
        a group on the same devices), each at its own route's figure."""
        work = self.work
        if work.stages == 1 or not self.charges_message_cpu:
            return 0.0
        return sum(self.message_cpu(work.actor(actor.data, actor.cfg, s), actor)[1] for s in sources)

    def message_time(self, actor: Actor, seconds: float, name: str, **tags: Any) -> Generator:
        """A rank's own time on a message (posting it, gloo's threads): measured in a two-rank loop,
        so not scaled by the co-run slowdown; counted as exposed communication."""
        if seconds <= 0:
            return
        start = self.env.now
        self.where[actor.label] = (name, start)
        yield self.env.timeout(seconds)
        self.note(actor, start, self.env.now, "exposed_communication", name, **tags)

    def _arrived(self, actor: Actor, key: tuple, start: float) -> None:
        self.event(key).succeed(start)
        if key[0] == "ret" and key[3] == self.work.warmup_steps - 1:
            self.warmup_end_s[(actor.data, actor.cfg)] = self.env.now

    def post_send(self, actor: Actor, peer: Actor, nbytes_per_rank: int, key: tuple, name: str,
                  **tags: Any) -> Generator:
        """Start an asynchronous send; the share of it that cannot overlap compute holds the sender.

        On a box whose transfers hide only ``e`` of their time (the topology's calibrated
        ``overlap_efficiency``), ``1 − e`` of the bytes move before the sender computes again;
        the rest travels in the background and fires ``key`` on arrival.
        """
        held = int(nbytes_per_rank * self._held_share)
        began = self.env.now
        if held > 0:
            self.where[actor.label] = ("held", key, began)
            self.net.owner = (actor.label, "held")
            start_round = self._start_round
            if start_round is not None:  # what collectives.exchange does, without its generators
                moves = self._moves(actor, peer)
                done = start_round(moves, held, 0) if moves else None
                if done is not None:
                    yield done
                self._tally(actor, began, self.env.now, "exposed_communication", tags.get("step"))
            else:
                yield from collectives.exchange(self.net, list(zip(actor.devices, peer.devices)), held, messages=0)
                self.note(actor, began, self.env.now, "exposed_communication", f"{name} (not overlapped)", **tags)
        if not self._send_now(actor, peer, nbytes_per_rank - held, key, began_s=began):
            self.spawn(self.send(actor, peer, nbytes_per_rank - held, key, name, began_s=began, held_bytes=held,
                                 **tags))
        send_cpu = self.message_cpu(actor, peer)[0]
        if send_cpu > 0:
            yield from self.message_time(actor, send_cpu, f"{name} (sender CPU)", **tags)

    def cfg_exchange(self, actor: Actor, nbytes: int, **tags: Any) -> Generator:
        """Swap noise predictions with the other CFG group's last stage; wait for both directions."""
        step, item = tags["step"], tags["patch"]
        peer = self.work.actor(actor.data, 1 - actor.cfg, actor.stage)
        began = self.env.now
        own = self.env.process(self._owned((actor.label, "cfg"), collectives.cfg_swap(
            self.net, list(zip(actor.devices, peer.devices)), nbytes)))
        self._own[actor.label] = own
        self.where[actor.label] = ("cfg", began)
        mine = self.event(cfg_key(actor, step, item))
        own.callbacks.append(lambda _ev: mine.succeed(self.env.now))
        yield self.env.all_of([own, self.event(cfg_key(peer, step, item))])
        self.note(actor, began, self.env.now, "exposed_communication", "cfg-exchange", **tags)

    # -- run ------------------------------------------------------------------------------
    def spawn(self, process: Generator) -> None:
        """Start a background transfer that the generation must wait for (sends between stages)."""
        self._sends.append(self.env.process(process))

    def check_work_left(self, actor: Actor, index: int) -> None:
        """Stop the run when ``actor``'s remaining timers from unit ``index`` end past the limit
        (:mod:`simulator.work_left`; only with a limit)."""
        left = self._work_left
        if left is None or self._deadline is None:
            return
        self._stop_if_past(self.env.now + left.least_s(actor, index))

    def _stop_if_past(self, least_end_s: float) -> None:
        """Stop the run once the least time it can end at (a sum of timers, lowered by
        :data:`~simulator.work_left.SLACK` for their order of addition) is past the limit."""
        bound = least_end_s * (1.0 - WORK_LEFT_SLACK)
        if bound >= self._deadline.at_s:
            self._deadline.stop_now(bound)

    def run(self) -> SimulationResult:
        """Run until every actor and every send has finished (not until the event queue is empty:
        the fair-share network leaves superseded completion timers behind)."""
        env = self.env
        deadline = self._deadline = arm(env, self.stop_after_s)
        if deadline is not None:
            self._work_left = WorkLeft(self.work, self.pass_cost, self._bounds, compute_scale=self.compute_scale,
                                       first_pass_s=self.first_pass_s(), vae_s=self.vae_s() * self.vae_scale)
        env.run(until=env.all_of([env.process(stage_actor(self, actor)) for actor in self.work.actors]))
        while True:
            if deadline is not None:
                deadline.check()  # raises SlowerThan once the clock reached stop_after_s unfinished
            pending = [p for p in self._sends if not p.processed]
            if not pending:
                break
            env.run(until=env.all_of(pending))
        self.finished_s = env.now
        if self.watch is not None and self.watch.found is not None:
            extend(self, self.watch, self.work.steps)
        return build_result(self)


LONG_RUN_STEPS = 64
"""Runs longer than this are simulated until their per-step pattern repeats, then extrapolated."""
SETTLE_STEPS = (4, 8, 16, 32)
"""Steps after the warm-up tried in turn to find the repeating pattern."""
CHECK_STEPS = 32
"""The pattern must also hold over this many further steps: ties between simultaneous
transfers, broken by float rounding, can shift a timeline once every few dozen steps."""


def simulate(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel, *,
             record_trace: bool = False, bandwidth_scale: float = 1.0, dtype_bytes: int = 2,
             network_model: str = "fair", link_fits: dict[str, LinkFit] | None = None,
             extrapolate: bool | None = None, stop_after_s: float | None = None) -> SimulationResult:
    """Simulate one generation of ``plan``; ``record_trace`` also keeps every event and builds a Trace.

    ``network_model``: ``"fair"`` (links shared equally by concurrent transfers) or ``"fifo"``
    (links as capacity-1 resources, transfers queue); see :mod:`simulator.network`.
    ``link_fits``: measured latency and bandwidth per route class, used in place of the
    topology's figures for routes of those classes.
    ``extrapolate``: stop the run once its whole state at a step start repeats the previous
    step start's and add the remaining steps in closed form (:mod:`simulator.periodic`; a long
    run that does not settle so falls back to :func:`extrapolated`); False: simulate every
    step; None (the default): True unless a trace is asked for (a trace needs every event). A
    run that does not settle is simulated whole, or refused when that is more than
    :data:`simulator.limits.MAX_DIRECT_PASSES` stage passes.
    ``stop_after_s``: raise :class:`~simulator.deadline.SlowerThan` once the simulated clock
    reaches it before the run ends, or earlier once a stage group's remaining timers would
    (:mod:`simulator.work_left`; the latency is then at least the bound raised; a search's runs
    that cannot win); only the first run and the whole-run fallback carry it, not a long run's
    extrapolation from short runs or its checks.
    Raises :class:`~simulator.errors.PlanError` listing every rule the plan breaks.
    """
    validate(plan, model, cluster)
    settings = SimSettings(record=record_trace, bandwidth_scale=bandwidth_scale, dtype_bytes=dtype_bytes,
                           network_model=network_model, link_fits=link_fits)
    if extrapolate is None:
        extrapolate = not record_trace
    d = plan.degrees
    groups = d.data * d.cfg * d.pipeline_stages
    rows, _ = model.token_grid(plan.height_px, plan.width_px)
    patches = min(plan.patches_in_effect, rows)
    warm = min(plan.warmup_steps, plan.steps)
    passes = (warm + (plan.steps - warm) * patches) * groups
    long_run = plan.steps > LONG_RUN_STEPS or passes > MAX_DIRECT_PASSES
    if extrapolate and not record_trace:
        sim = Simulation(plan, model, cluster, cost_model, settings, watch=True, give_up=long_run)
        sim.stop_after_s = stop_after_s
        if sim.watch is not None:
            try:
                result = sim.run()
                if not long_run or _holds_further(sim, plan, model, cluster, cost_model, settings):
                    return result
            except NotSettled:
                pass
        if long_run:
            result = extrapolated(plan, model, cluster, cost_model, settings)
            if result is not None:
                return result
    if passes > MAX_DIRECT_PASSES:
        raise SimulatorError(f"steps: {plan.steps:,} steps of {patches} patches on "
                             f"{groups} stage groups is {passes:,} stage passes, more than the "
                             f"{MAX_DIRECT_PASSES:,} one simulation runs, and the run did not settle into a "
                             f"repeating per-step pattern within {SETTLE_STEPS[-1]} steps to extrapolate",
                             field="steps")
    sim = Simulation(plan, model, cluster, cost_model, settings)
    sim.stop_after_s = stop_after_s
    return sim.run()


def _holds_further(sim: Simulation, plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph,
                   cost_model: CostModel, settings: SimSettings) -> bool:
    """For a long run stopped at its steady state: the same extension to :data:`CHECK_STEPS` steps
    beyond the stop equals the whole simulation of as many steps (a float tie that flips every few
    dozen steps, seen on replicas sharing a link, would not show in the two snapshots)."""
    if sim.watch is None or sim.watch.found is None:
        return True
    steps = sim.watch.stopped_at_steps + CHECK_STEPS
    cache = PriceCache()
    short = Simulation(plan.model_copy(update={"steps": steps}), model, cluster, cost_model, settings, cache=cache,
                       watch=True)
    short.run()
    whole = _run_steps(plan, steps, model, cluster, cost_model, settings, cache)
    return _same(_observables(short), _observables(whole))


def _observables(sim: Simulation) -> list[float]:
    """Every number the result is built from that grows with the step count, in a fixed order."""
    out = [sim.finished_s]
    for table in (sim.totals, sim.after_warmup):
        for label in sorted(table):
            out += [table[label].get(k, 0.0) for k in _CATEGORIES]
    traffic = sim.net.traffic
    out.append(float(traffic.transfers))
    for table in (traffic.by_route_class, traffic.sent_by_device, traffic.received_by_device, traffic.by_link):
        out += [float(table[k]) for k in sorted(table)]
    return out


_CATEGORIES = ("embed", "compute", "final", "scheduler", "overhead", "vae", "exposed_communication", "bubble")


def corun_scales(plan: ParallelPlan, cluster: ClusterGraph, cost_model: CostModel) -> tuple[float, float]:
    """(compute, VAE) time factors for ranks that share a host (the cost model's measured
    ``concurrent_slowdown``; 1 without one, as on GPUs). Every pass is charged the factor of
    the busiest host's rank count; the VAE decode only when several replicas decode at once
    (data parallel), since otherwise the other ranks are done by then, and by the VAE's own
    measured factor where the profile has one."""
    fn = getattr(cost_model, "concurrent_slowdown", None)
    if fn is None:
        return 1.0, 1.0
    hosts: dict[str, int] = {}
    for device in plan.devices(cluster):
        hosts[cluster.device_host[device]] = hosts.get(cluster.device_host[device], 0) + 1
    ranks = max(hosts.values(), default=1)
    scale = float(fn(ranks) or 1.0) if ranks > 1 else 1.0
    decoders = min(plan.degrees.data, ranks)
    return scale, (float(fn(decoders, "vae_decode") or 1.0) if decoders > 1 else 1.0)


def _run_steps(plan: ParallelPlan, steps: int, model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel,
               settings: SimSettings, cache: PriceCache) -> Simulation:
    sim = Simulation(plan.model_copy(update={"steps": steps}), model, cluster, cost_model, settings, cache=cache)
    sim.run()
    return sim


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-9 * max(abs(x), abs(y)) + 1e-12 for x, y in zip(a, b))


def extrapolated(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel,
                 settings: SimSettings = SimSettings()) -> SimulationResult | None:
    """The result of ``plan`` from short runs, or None when its steps do not settle into one pattern.

    Runs of ``a``, ``a + 1``, ``a + 2`` and ``a + 2 +`` :data:`CHECK_STEPS` steps (``a`` =
    warm-up + 4, 8, 16, 32) are simulated whole; when the second step added changes every
    observable (latency, every stage group's time per category, every traffic count) by what
    the first step added, to 1e-9, and the last run by ``CHECK_STEPS`` times that, the run has
    reached its steady pattern: each further step adds the same again, and the last step (no
    latent return, the VAE decode) sits at the end of every run alike. The result of ``T``
    steps is then the ``a + 2``-step result plus ``T − a − 2`` increments. A pattern whose
    period is longer than one step (seen: a float tie between two replicas' transfers that
    flips every 20 steps) fails the check and the run is simulated whole. Tests compare the
    extrapolation with whole simulations (tests/simulator/test_long_runs.py).
    """
    warm = min(plan.warmup_steps, plan.steps)
    cache = PriceCache()
    for settle in SETTLE_STEPS:
        a = warm + settle
        if a + 2 + CHECK_STEPS >= plan.steps:
            return None
        runs = [_run_steps(plan, n, model, cluster, cost_model, settings, cache) for n in (a, a + 1, a + 2)]
        values = [_observables(r) for r in runs]
        first = [y - x for x, y in zip(values[0], values[1])]
        second = [y - x for x, y in zip(values[1], values[2])]
        if not _same(first, second):
            continue
        later = _observables(_run_steps(plan, a + 2 + CHECK_STEPS, model, cluster, cost_model, settings, cache))
        if not _same([y - x for x, y in zip(values[2], later)], [CHECK_STEPS * d for d in second]):
            continue
        return _extend(runs[2], runs[1], plan, plan.steps - a - 2)
    return None


def _extend(sim: Simulation, previous: Simulation, plan: ParallelPlan, more: int) -> SimulationResult:
    """``sim``'s state advanced by ``more`` times its increment over ``previous`` (one step shorter), summarised."""
    step = sim.finished_s - previous.finished_s
    sim.finished_s += more * step
    for table, before in ((sim.totals, previous.totals), (sim.after_warmup, previous.after_warmup)):
        for label, cats in table.items():
            for cat in list(cats):
                cats[cat] += more * (cats[cat] - before[label].get(cat, 0.0))
    traffic, old = sim.net.traffic, previous.net.traffic
    traffic.transfers += more * (traffic.transfers - old.transfers)
    for table, before in ((traffic.by_route_class, old.by_route_class), (traffic.sent_by_device, old.sent_by_device),
                          (traffic.received_by_device, old.received_by_device), (traffic.by_link, old.by_link)):
        for key in list(table):
            table[key] += more * (table[key] - before.get(key, 0))
    sim.plan = plan
    sim.work = replace(sim.work, steps=plan.steps)
    return build_result(sim)
