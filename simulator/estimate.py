"""A closed-form *estimate* of a plan's latency, without running simpy: for pruning, not for answers.

It prices the same passes as the simulator (same cost model calls, same strategies' shards
and collectives) but replaces the event simulation with formulas: every collective runs
alone at its worst route's speed (no contention, so it can be optimistic on shared PCIe
uplinks), overlapped collectives are hidden up to the compute they overlap, and the
pipeline follows PipeFusion's closed form::

    W · Σ_d full_d  +  (T − W) · max(M · max_d patch_d, Σ_d patch_d)  +  (Σ_d patch_d − max_d patch_d)

(warm-up passes, steady steps limited by the slowest stage or by one patch's round trip
when M < N, one pipeline fill; stage-to-stage sends are charged whole, HunyuanDiT's long
skip sends only for the share the topology's overlap efficiency cannot hide), plus the cost model's first-pass overhead and VAE decode
once (the scheduler step and pass overhead are inside each pass). :func:`simulator.engine.simulate` is the reference.

It prices through :class:`simulator.engine.Pricing` (no simpy environment, no network state)
and, given a :class:`~simulator.engine.PriceCache`, shares every price with the other plans
of a search; passes over equal token counts are priced once per plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from profiles.costs.cost_model import CostModel
from profiles.catalog.models import ModelPreset
from profiles.topology.graph import ClusterGraph, Route
from simulator.collectives import ALGORITHMS, cfg_swap_s
from simulator.engine import PriceCache, Pricing, SimSettings
from simulator.network import LinkFit, Network
from profiles.costs.cost_model import EMBED, FINAL, LayerShape
from simulator.plan import ParallelPlan, patch_rows
from simulator.strategies import STRATEGIES
from simulator.strategies.base import CollectiveSpec, PassWork, split_by_overlap
from simulator.strategies.cfg import batch_per_pass, latent_bytes, prediction_bytes
from simulator.workload import Actor, Workload


Figures = tuple[tuple[float, float], ...]
"""The distinct (latency s, bytes/s) of the routes between a group's members."""


def _group_figures(sim: Pricing, net: Network, groups: list[list[str]], fits_key: tuple) -> list[tuple[int, Figures]]:
    """(size, route figures) of each distinct kind of group among ``groups``.

    ``fits_key``: the network's link fits and bandwidth scale, as a key. A group's figures are
    looked up once per search and placement class (:meth:`ClusterGraph.placement_class`: groups
    on identical hosts at the same local positions see routes with the same figures), not once
    per plan, spec and group; groups with equal figures are priced once.
    """
    out: dict[tuple[int, Figures], None] = {}
    for group in groups:
        n = len(group)
        if n < 2:
            continue
        key = (sim.cluster.placement_class(group), fits_key)
        figures = sim.route_figures.get(key)
        if figures is None:
            routes = {sim.cluster.route(a, b) for a in group for b in group if a != b}
            figures = sim.route_figures[key] = tuple(sorted(
                {(net.latency_s(r), net.route_bytes_per_s(r)) if r.links else (0.0, 0.0) for r in routes}))
        out[(n, figures)] = None
    return list(out)


def _collective_s(groups: list[tuple[int, Figures]], spec: CollectiveSpec) -> float:
    """The collective alone at its worst route's speed: rounds × the slowest round, a round being one
    latency and the chunks a rank sends at once (one, or an all-to-all's n − 1) one after the other."""
    algorithm = ALGORITHMS[spec.kind]
    worst = 0.0
    for n, figures in groups:
        sent = algorithm.peers(n) * algorithm.chunk_bytes(spec.bytes_per_rank, n)
        per_round = max(spec.messages * latency + sent / speed if speed else 0.0 for latency, speed in figures)
        worst = max(worst, algorithm.rounds(n) * per_round)
    return worst


def _collective_floor_s(n: int, figure: tuple[float, float], floor: "RouteFloor", spec: CollectiveSpec) -> float:
    """At most what the collective takes on any ``n`` devices: each round at least the latency and one chunk
    at the speed of ``figure`` (the fastest route a group of ``n`` must use); where a rank sends several
    chunks at once, also all of them out of its device at no more than the fastest device's whole egress
    (:attr:`RouteFloor.egress_bytes_per_s`), after the lowest latency of any route (its nearer peers' chunks
    start moving before the farther ones')."""
    algorithm = ALGORITHMS[spec.kind]
    latency, speed = figure
    chunk, peers = algorithm.chunk_bytes(spec.bytes_per_rank, n), algorithm.peers(n)
    per_round = spec.messages * latency + (chunk / speed if speed else 0.0)
    if peers > 1 and floor.egress_bytes_per_s:
        per_round = max(per_round, spec.messages * floor.any_route[0] + peers * chunk / floor.egress_bytes_per_s)
    return algorithm.rounds(n) * per_round


def estimate_latency_s(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, cost_model: CostModel,
                       *, dtype_bytes: int = 2, link_fits: dict[str, LinkFit] | None = None,
                       cache: PriceCache | None = None) -> float:
    """Estimated seconds of one generation (closed form; see the module docstring for what it ignores).

    ``cache``: prices shared with other plans of the same model, cluster and cost model.
    """
    sim = Pricing(plan, model, cluster, cost_model, SimSettings(dtype_bytes=dtype_bytes, link_fits=link_fits),
                  cache=cache)
    net = Network(None, cluster, link_fits=link_fits)  # type: ignore[arg-type]  # pricing only: no simpy env
    fits_key = (tuple(sorted(net.link_fits.items())), net.bandwidth_scale)
    work = sim.work
    first = work.actor(0, 0, 0)
    groups: dict[tuple[int, str], list[tuple[int, Figures]]] = {}
    collective_s: dict[tuple[int, CollectiveSpec], float] = {}
    times: dict[tuple, float] = {}

    def comm_s(stage: int, actor: Actor, spec: CollectiveSpec) -> float:
        key = (stage, spec)
        t = collective_s.get(key)
        if t is None:
            inner = groups.get((stage, spec.axis))
            if inner is None:
                inner = groups[(stage, spec.axis)] = _group_figures(sim, net, work.inner_groups(actor, spec.axis),
                                                                    fits_key)
            t = collective_s[key] = _collective_s(inner, spec)
        return t

    def stage_time(stage: int, item: int | None, warmup: bool, first_step: bool = False) -> float:
        key = (stage, work.tokens(item), warmup, first_step)
        t = times.get(key)
        if t is None:
            t = times[key] = _stage_time(stage, item, warmup, first_step)
        return t

    def _stage_time(stage: int, item: int | None, warmup: bool, first_step: bool = False) -> float:
        actor = work.actor(0, 0, stage)
        cost = sim.pass_cost(stage, item, warmup=warmup, first=first_step)
        c = cost.compute_s
        # an overlapped collective starts (1−f)·C into the pass and hides behind the rest.
        passed = max([c] + [(1.0 - s.overlap_fraction) * c + comm_s(stage, actor, s)
                            for s in cost.specs if s.overlapped])
        blocking = sum(comm_s(stage, actor, s) for s in cost.specs if not s.overlapped)
        t = cost.embed_s + passed + blocking + cost.final_s + cost.overhead_s + cost.scheduler_s
        act = cost.local_query_tokens * work.hidden * work.batch * work.dtype_bytes
        held = 1.0 - cluster.topology.communication.overlap_efficiency
        for (src, dst), count in work.skip_layers.items():  # long skips: only the held share delays the sender
            if src == stage and held > 0:
                t += held * net.duration_s(cluster.route(actor.devices[0], work.actor(0, 0, dst).devices[0]),
                                               act * count)
        if stage < work.stages - 1:
            nxt = work.actor(0, 0, stage + 1)
            t += message_s(net, cluster.route(actor.devices[0], nxt.devices[0]), act)
        else:
            latent = latent_bytes(model, cost.local_query_tokens, work.dtype_bytes)
            t += message_s(net, cluster.route(actor.devices[0], first.devices[0]), latent)
            if work.degrees["cfg"] > 1:
                peer = work.actor(0, 1, stage)
                output = prediction_bytes(model, cost.local_query_tokens, work.dtype_bytes)
                swap = cfg_swap_s(net, (actor.devices[0], peer.devices[0]), output)
                t += net.duration_s(cluster.route(actor.devices[0], peer.devices[0]), output) if swap is None else swap
        return t

    once = sim.setup_s() + sim.first_pass_s() + sim.vae_s()  # the image's set-up, the cold first pass, the VAE
    return once + _loop_s(work, stage_time)


def message_s(net: Network, route: Route, nbytes: float) -> float:
    """A stage message's share of a stage's time: its post-to-use time (the measured latency and the
    bytes), or, where the two ends' measured CPU (:meth:`Network.message_cpu`) is more, that: a stage
    cannot run faster than its own posting and receiving, and the sender's CPU overlaps the wire (every
    stage sends and receives one message per unit, so both ends count on the sender's stage)."""
    send_cpu, recv_cpu, _ = net.message_cpu(route)
    return max(net.duration_s(route, nbytes), send_cpu + recv_cpu if route.links else 0.0)


def _loop_s(work: Workload, stage_time: Callable[..., float]) -> float:
    """The denoising loop's closed form (the module docstring's formula)."""
    warm = work.warmup_steps
    full = sum(stage_time(d, None, True) for d in range(work.stages)) if warm else 0.0
    total = warm * full
    rest = work.steps - warm
    if rest <= 0:
        return total
    if work.patches == 1:
        steady = sum(stage_time(d, None, False) for d in range(work.stages))
        if warm:
            return total + rest * steady
        # no warm-up: the first step still has no stale K/V (a stale strategy runs it synchronously).
        return sum(stage_time(d, None, False, True) for d in range(work.stages)) + (rest - 1) * steady
    per_stage = [sum(stage_time(d, m, False) for m in range(work.patches)) / work.patches
                 for d in range(work.stages)]
    slowest, round_trip = max(per_stage), sum(per_stage)
    return total + rest * max(work.patches * slowest, round_trip) + (round_trip - slowest)


@dataclass(frozen=True)
class RouteFloor:
    """The fastest figures any route of a cluster has, for bounds that hold under every placement.

    ``(latency s, bytes/s)`` pairs are the lowest latency and the highest speed over the routes
    (not necessarily of one route), so ``messages · latency + bytes / speed`` is at most what any
    route takes. A group larger than every host must cross hosts, so its slowest route is at
    least ``cross_host``'s figures.
    """

    any_route: tuple[float, float]
    cross_host: tuple[float, float] | None
    """None on a one-host cluster."""
    host_devices: int
    """Devices on the largest host."""
    egress_bytes_per_s: float = float("inf")
    """The most bytes/s all transfers out of one device can move together: the sum of its links' bandwidth
    (every route leaves by one of them, and a link's shares sum to its bandwidth) times the largest
    measured / data-sheet speed of any route; the largest over devices."""

    def figures(self, group_size: int) -> tuple[float, float]:
        if group_size > self.host_devices and self.cross_host is not None:
            return self.cross_host
        return self.any_route


def route_floor(cluster: ClusterGraph, link_fits: dict[str, LinkFit] | None = None) -> RouteFloor:
    """:class:`RouteFloor` of ``cluster``: the routes among the devices of each node entry's first two
    hosts are every route there is (hosts of one entry are identical; :meth:`ClusterGraph.route`)."""
    net = Network(None, cluster, link_fits=link_fits)  # type: ignore[arg-type]  # pricing only: no simpy env
    hosts: dict[int, list[str]] = {}
    for host, entry in cluster.host_node.items():
        if len(hosts.setdefault(entry, [])) < 2:
            hosts[entry].append(host)
    shown = {h for reps in hosts.values() for h in reps}
    devices = [d for d in cluster.devices if cluster.device_host[d] in shown]
    same: list[tuple[float, float]] = []
    cross: list[tuple[float, float]] = []
    speed = 0.0
    for a in devices:
        for b in devices:
            route = cluster.route(a, b)
            if a != b and route.links:
                (same if cluster.device_host[a] == cluster.device_host[b] else cross).append(
                    (net.latency_s(route), net.route_bytes_per_s(route)))
                speed = max(speed, net.route_bytes_per_s(route) / (route.bottleneck_gb_s * 1e9 * net.bandwidth_scale))
    every = same + cross
    egress = max((sum(cluster.link((d, x))["bandwidth_gb_s"] for x in cluster.graph.neighbors(d))
                  for d in devices), default=0.0) * 1e9 * net.bandwidth_scale * speed

    def floor(figures: list[tuple[float, float]]) -> tuple[float, float]:
        return min(f[0] for f in figures), max(f[1] for f in figures)
    per_host: dict[str, int] = {}
    for d in cluster.devices:
        per_host[cluster.device_host[d]] = per_host.get(cluster.device_host[d], 0) + 1
    return RouteFloor(floor(every) if every else (0.0, float("inf")), floor(cross) if cross else None,
                      max(per_host.values(), default=1), egress or float("inf"))


def compute_bound_s(plan: ParallelPlan, model: ModelPreset, cost_model: CostModel, *, dtype_bytes: int = 2,
                    cache: PriceCache | None = None, routes: RouteFloor | None = None,
                    overlap_efficiency: float = 1.0) -> float:
    """A lower bound of :func:`estimate_latency_s` from compute alone, whatever the split and placement.

    The estimate's every pass costs at least its compute, embeddings, final layer and
    scheduler step (communication, sends and pass overheads only add), and its loop is a
    sum and maximum of pass times, so it cannot be less than

        first pass + VAE + W · P(S) + (T − W) · Σ_m P(S_m) · max(1/N, 1/M)

    where ``P(q)`` prices every block of the model once over ``q`` query tokens (the stages
    together) and ``S_m`` are the patches: the slowest of ``N`` stages is at least their
    mean, one patch's round trip at least ``1/M`` of the step. The search skips a shape whose
    bound is already slower than the plans it keeps (:func:`planner.search.search`).

    ``routes`` (with the topology's ``overlap_efficiency``): ``P(q)`` also counts the collectives
    a pass cannot overlap (Ulysses' all-to-alls, tensor all-reduces, the gathers of the output,
    the share of overlapped ones the box cannot hide), each alone at the cluster's fastest route
    figures (an all-to-all also no faster than the fastest device's whole egress allows). Their
    bytes and calls are proportional to a stage's blocks, so over the stages they sum to the whole
    model's, whatever the split; the estimate prices each at its group's
    slowest route, and the simulation adds contention, so the bound stays below both.
    """
    cache = cache if cache is not None else PriceCache()
    degrees = plan.degrees.as_dict()
    strategies = STRATEGIES.active(degrees)
    rows, cols = model.token_grid(plan.height_px, plan.width_px)
    image = rows * cols
    batch = batch_per_pass(degrees, model)
    kinds = model.arch.block_kinds()
    distinct = tuple(dict.fromkeys(kinds))

    sharding = tuple((s.axis, n) for s, n in strategies)
    passes = cache.bounds
    hidden, layers = model.arch.hidden_size, len(kinds)
    all_reduces = model.arch.tensor_all_reduces(kinds)

    def layer_s(kind: str, q: int, k: int) -> float:
        shape = LayerShape(kind, q, k, batch)
        for strategy, degree in strategies:
            shape = strategy.shard(shape, degree)
        t = cache.layers.get(shape)
        if t is None:
            t = cache.layers[shape] = float(cost_model.layer_time_s(shape))
        return t

    def blocks_s(q: int) -> float:
        """Every block once over ``q`` query tokens, summed in block order (each kind sharded and priced once)."""
        by_kind = {kind: layer_s(kind, q, image) for kind in distinct}
        return sum(by_kind[kind] for kind in kinds)

    def optional_s(method: str, *args: object) -> float:
        key = (method, *args)
        value = cache.optional.get(key)
        if value is None:
            fn = getattr(cost_model, method, None)
            answer = fn(*args) if fn is not None else None
            if answer is None:
                cache.unpriced.add(key)
            value = cache.optional[key] = float(answer or 0.0)
        return value

    def blocking_s(q: int, warmup: bool) -> float:
        """The pass's collectives that cannot overlap, over every block, at the fastest route figures."""
        assert routes is not None
        local = LayerShape(kinds[0], q, image, batch)
        for strategy, degree in strategies:
            local = strategy.shard(local, degree)
        work = PassWork(q, image, batch, layers, hidden, dtype_bytes, warmup, prediction_bytes(model, q, dtype_bytes),
                        0.0, False, all_reduces, model.text_tokens)
        total = 0.0
        for strategy, degree in strategies:
            if strategy.axis == "tensor" and all_reduces is None:
                continue  # a block without a stated count: stages price it differently, so count none (still a bound)
            for spec in strategy.collectives(work, degree, local.query_tokens):
                for part in split_by_overlap(spec, overlap_efficiency):
                    if not part.overlapped:
                        total += _collective_floor_s(degree, routes.figures(degree), routes, part)
        return total

    def pass_s(q: int, warmup: bool = False) -> float:
        key = (sharding, q, image, batch) if routes is None else (sharding, q, image, batch, warmup, routes,
                                                                  overlap_efficiency)
        t = passes.get(key)
        if t is None:
            t = (blocks_s(q) + layer_s(EMBED, q, q) + layer_s(FINAL, q, q) + optional_s("scheduler_step_time_s", q))
            if routes is not None:
                t += blocking_s(q, warmup)
            passes[key] = t
        return t

    stages = plan.degrees.pipeline_stages
    patches = [r * cols for r in patch_rows(rows, min(plan.patches_in_effect, rows))]
    warm = min(plan.warmup_steps, plan.steps)
    rest = plan.steps - warm
    total = optional_s("first_pass_overhead_s", batch) + optional_s("vae_decode_time_s", plan.height_px, plan.width_px)
    total += warm * pass_s(image, True)
    if rest > 0:
        if len(patches) == 1:
            total += rest * pass_s(image)
        else:
            sizes: dict[int, int] = {}  # patches come in at most two sizes: each priced once, times its count
            for q in patches:
                sizes[q] = sizes.get(q, 0) + 1
            total += rest * sum(pass_s(q) * n for q, n in sizes.items()) * max(1.0 / stages, 1.0 / len(patches))
    return total
