"""The network: transfers over the directed links of the topology, and how they contend.

Following ns.py, a transfer's time alone is its propagation delay (the route's summed
link latencies, once per message) plus its serialisation delay (bytes over the route's
bottleneck bandwidth). Two models say what happens when transfers share a link (a PCIe
switch uplink, the cross-socket link, a NIC); transfers over disjoint links never interact,
and the two directions of a link are separate:

``fifo`` (:class:`Network`)
    Every directed link is a capacity-1 FIFO resource; a transfer holds every link of its
    route for its whole time, acquired in one global order (sorted link ids: no deadlock).
    Sharing transfers run one after the other. Simple and exact for isolated pairs, but a
    small latency-critical message queues behind a bulk transfer that started first
    (head-of-line blocking), which real NCCL traffic, cut into small chunks, does not
    suffer; the ordering also makes the model prone to scheduling anomalies.

``fair`` (:class:`FairShareNetwork`, the default)
    A fluid model: each link's bandwidth is split equally between the transfers crossing
    it, and a transfer moves at the smallest share along its route; rates are recomputed
    whenever a transfer starts or ends on one of its links. Two transfers through one link
    both take twice as long as one alone. This is what chunked, interleaved NCCL streams
    look like on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections import deque
import bisect
import heapq
import operator
from typing import Callable, Generator, Iterator

import simpy

from profiles.topology.graph import ClusterGraph, LinkId, Route


@dataclass(frozen=True)
class CollectiveTiming:
    """A measured collective's completion time against bytes per rank (``pfplan profile links``).

    Inside the measured sizes the time is interpolated between the points (made non-decreasing
    first: timer noise can make a larger message look faster); above them it grows from the
    largest point at the fitted bandwidth. It includes what a point-to-point decomposition
    leaves out: the backend's per-collective setup, per-message cost and the ranks'
    synchronisation (gloo on this VM: ≈ 150 µs for an all-gather of a few KiB against ≈ 46 µs
    for one send).
    """

    op: str
    group_size: int
    points: tuple[tuple[float, float], ...]
    """(bytes per rank, seconds), by bytes."""
    bandwidth_gb_s: float
    extra_s: float = 0.0
    """Per call, when the call follows compute (measured in a compute loop; :mod:`profiler.links`)."""

    def time_s(self, nbytes: float, bandwidth_scale: float = 1.0) -> float:
        pts = sorted(self.points)
        xs, ts, best = [x for x, _ in pts], [], 0.0
        for _, t in pts:
            best = max(best, t)
            ts.append(best)
        if nbytes <= xs[0]:
            t = ts[0]
        elif nbytes >= xs[-1]:
            t = ts[-1] + (nbytes - xs[-1]) / (self.bandwidth_gb_s * 1e9)
        else:
            i = next(k for k in range(1, len(xs)) if xs[k] >= nbytes)
            w = (nbytes - xs[i - 1]) / (xs[i] - xs[i - 1])
            t = ts[i - 1] + w * (ts[i] - ts[i - 1])
        return ts[0] + (t - ts[0]) / bandwidth_scale  # more bandwidth shortens the size-dependent part only


@dataclass(frozen=True)
class LinkFit:
    """Measured point-to-point behaviour of one route class: time ≈ latency + bytes / bandwidth,
    and the collectives measured over that class (``collectives``: empty when none were)."""

    latency_us: float
    bandwidth_gb_s: float
    collectives: tuple[CollectiveTiming, ...] = ()
    send_cpu_s: float = 0.0
    """What a stage's message costs its sender's loop (``in_loop_send_cpu_us``; 0: not measured)."""
    recv_cpu_s: float = 0.0
    """What it costs the receiver's loop, a part of ``latency_us`` (``in_loop_recv_cpu_us``)."""


class TrafficLog:
    """Bytes moved, counted once per transfer (by route class) and at both ends (per device).

    ``add`` only sums bytes per route (a simulation adds one entry per transfer, hundreds of
    thousands); the tables per route class, device and link are summed from those when read.
    """

    def __init__(self) -> None:
        self._by_route_class: dict[str, int] = {}
        self._sent: dict[str, int] = {}
        self._received: dict[str, int] = {}
        self._by_link: dict[LinkId, int] = {}
        self._transfers = 0
        self._pending: dict[int, list] = {}
        """id(route) → [route, bytes, transfers] not yet in the tables."""
        self._rounds: dict[int, list] = {}
        """id(routes of a round) → [routes, bytes per route, rounds] not yet in ``_pending``."""

    def _add_sum(self, route: Route, total_bytes: int, count: int) -> None:
        entry = self._pending.get(id(route))
        if entry is None:
            self._pending[id(route)] = [route, total_bytes, count]
        else:
            entry[1] += total_bytes
            entry[2] += count

    def add(self, route: Route, nbytes: int, count: int = 1) -> None:
        """``count`` transfers of ``nbytes`` each over ``route``."""
        entry = self._pending.get(id(route))  # routes are cached per device pair: identity is enough
        if entry is None:
            self._pending[id(route)] = [route, nbytes * count, count]
        else:
            entry[1] += nbytes * count
            entry[2] += count

    def add_round(self, routes: tuple[Route, ...], nbytes: int) -> None:
        """One transfer of ``nbytes`` over each of ``routes`` (a round; the tuple is kept per round
        shape, so identity is enough), summed per tuple until read."""
        entry = self._rounds.get(id(routes))
        if entry is None:
            self._rounds[id(routes)] = [routes, nbytes, 1]
        else:
            entry[1] += nbytes
            entry[2] += 1

    def _flush(self) -> None:
        rounds, self._rounds = self._rounds, {}
        for routes, nbytes, count in rounds.values():
            for route in routes:
                self._add_sum(route, nbytes, count)
        pending, self._pending = self._pending, {}
        for route, nbytes, count in pending.values():
            self._transfers += count
            self._by_route_class[route.route_class] = self._by_route_class.get(route.route_class, 0) + nbytes
            self._sent[route.src] = self._sent.get(route.src, 0) + nbytes
            self._received[route.dst] = self._received.get(route.dst, 0) + nbytes
            for link in route.links:
                self._by_link[link] = self._by_link.get(link, 0) + nbytes

    @property
    def by_route_class(self) -> dict[str, int]:
        self._flush()
        return self._by_route_class

    @property
    def sent_by_device(self) -> dict[str, int]:
        self._flush()
        return self._sent

    @property
    def received_by_device(self) -> dict[str, int]:
        self._flush()
        return self._received

    @property
    def by_link(self) -> dict[LinkId, int]:
        self._flush()
        return self._by_link

    @property
    def transfers(self) -> int:
        self._flush()
        return self._transfers

    @transfers.setter
    def transfers(self, value: int) -> None:
        self._flush()
        self._transfers = value


class Link:
    """A capacity-1 FIFO resource for one directed link.

    Same semantics as ``simpy.Resource(capacity=1)`` (first come, first served; the holder
    hands the link straight to the next waiter on release), but taking a free link costs
    no simpy event: most transfers find their links free, and this halves the events of a
    large simulation.
    """

    __slots__ = ("busy", "waiting")

    def __init__(self) -> None:
        self.busy = False
        self.waiting: deque[simpy.Event] = deque()

    def release(self) -> None:
        if self.waiting:
            self.waiting.popleft().succeed()  # ownership passes on; the link stays busy
        else:
            self.busy = False


class Network:
    """``fifo`` model: links of ``cluster`` as capacity-1 resources in ``env``.

    ``bandwidth_scale`` multiplies every link's bandwidth (what-if studies and the
    monotonicity property tests). ``link_fits`` maps a route class (``PIX``, ``SYS``, …) to a
    measured ``LinkFit`` (``latency_us``, ``bandwidth_gb_s``: what ``pfplan profile links``
    fits); transfers on routes of that class take the measured latency and bandwidth in
    place of the topology's data-sheet figures (under contention, the route's links count
    as scaled by measured / data-sheet bottleneck bandwidth).
    """

    def __init__(self, env: simpy.Environment, cluster: ClusterGraph, *, bandwidth_scale: float = 1.0,
                 link_fits: dict[str, LinkFit] | None = None) -> None:
        self.env = env
        self.cluster = cluster
        self.bandwidth_scale = bandwidth_scale
        self.link_fits = dict(link_fits or {})
        self.efficiency = cluster.topology.communication.bandwidth_efficiency
        self.efficiency_by_class = dict(cluster.topology.communication.bandwidth_by_route_class)
        self.curves = {(c.op, c.group_size, cls): c for cls, fit in self.link_fits.items() for c in fit.collectives}
        self.traffic = TrafficLog()
        self._links: dict[LinkId, Link] = {}
        self._order: dict[tuple[LinkId, ...], tuple[Link, ...]] = {}
        self.round_plans: dict[tuple, list[tuple[tuple[str, str], ...]]] = {}
        """(collective, devices, …) → its rounds' moves, built once (:mod:`simulator.collectives`)."""
        self.owner: object = None
        """Who starts the next transfers (set by the engine just before it starts them): kept with
        each round in flight so that :meth:`FairShareNetwork.state` can say whose it is."""

    def _held_links(self, links: tuple[LinkId, ...]) -> tuple[Link, ...]:
        """The route's links as resources, in the one global acquisition order (sorted ids)."""
        out = self._order.get(links)
        if out is None:
            out = self._order[links] = tuple(self._links.setdefault(link, Link()) for link in sorted(links))
        return out

    def duration_s(self, route: Route, nbytes: float, messages: float = 1) -> float:
        """Time of a transfer alone on ``route``: ``messages`` latencies plus bytes over the bottleneck."""
        if not route.links:
            return 0.0
        return messages * self.latency_s(route) + nbytes / self.route_bytes_per_s(route)

    def collective_curve(self, op: str, devices: list[str] | tuple[str, ...]) -> CollectiveTiming | None:
        """The measured timing of ``op`` over these devices, when one was measured for their group
        size on the route class that joins them (every pair's class the same); else None."""
        if not self.curves or len(devices) < 2:
            return None
        classes = {self.cluster.route(a, b).route_class for a in devices for b in devices if a != b}
        return self.curves.get((op, len(devices), classes.pop())) if len(classes) == 1 else None

    def timed_collective(self, curve: CollectiveTiming, devices: list[str] | tuple[str, ...], nbytes: float,
                         messages: int) -> Generator:
        """Run a measured collective: ``messages`` calls of ``nbytes / messages`` each (ring-order traffic logged)."""
        n = len(devices)
        for i in range(n):
            route = self.cluster.route(devices[i], devices[(i + 1) % n])
            self.traffic.add(route, int(nbytes))
        per_call = curve.time_s(nbytes / max(messages, 1), self.bandwidth_scale) + curve.extra_s
        yield self.env.timeout(max(messages, 1) * per_call)

    def message_cpu(self, route: Route) -> tuple[float, float, float]:
        """(sender CPU s, receiver CPU s, share of the route's latency left to the wire) of a message
        a pipeline stage posts between passes, where the links profile measured both ends' CPU.

        The measured in-loop latency is one message's time from post to the receiver's use, which
        includes the receiver's CPU for it: a stage's next pass cannot hide that part (nor the
        sender's, spent by gloo's threads on the same cores), so the engine charges both to the ranks
        and the wire keeps the rest. Unmeasured: (0, 0, 1), the whole latency on the wire."""
        fit = self.link_fits.get(route.route_class)
        if fit is None or not route.links or (fit.send_cpu_s <= 0 and fit.recv_cpu_s <= 0):
            return 0.0, 0.0, 1.0
        latency = fit.latency_us * 1e-6
        share = max(latency - fit.recv_cpu_s, 0.0) / latency if latency > 0 else 1.0
        return fit.send_cpu_s, fit.recv_cpu_s, share

    def latency_s(self, route: Route) -> float:
        fit = self.link_fits.get(route.route_class)
        return (fit.latency_us if fit else route.latency_us) * 1e-6

    def route_bytes_per_s(self, route: Route) -> float:
        """The route's speed alone: the measured fit of its class, else its bottleneck link
        times the topology's bandwidth efficiency for its class (calibrated, or a prior:
        :mod:`profiles.topology.priors`; a measured fit already includes it)."""
        fit = self.link_fits.get(route.route_class)
        if fit:
            return fit.bandwidth_gb_s * 1e9 * self.bandwidth_scale
        efficiency = self.efficiency_by_class.get(route.route_class, self.efficiency)
        return route.bottleneck_gb_s * efficiency * 1e9 * self.bandwidth_scale

    def transfer(self, src: str, dst: str, nbytes: int, messages: float = 1) -> Generator:
        """A simpy process: move ``nbytes`` from device ``src`` to ``dst`` (free when they are the same)."""
        route = self.cluster.route(src, dst)
        if not route.links or (nbytes <= 0 and messages <= 0):
            return
        self.traffic.add(route, int(nbytes))
        links = self._held_links(route.links)
        for link in links:
            if link.busy:
                turn = self.env.event()
                link.waiting.append(turn)
                yield turn
            else:
                link.busy = True
        yield self.env.timeout(self.duration_s(route, nbytes, messages))
        for link in links:
            link.release()


class _Chain:
    """Rounds run back to back (a collective): the next starts the moment the last transfer of
    the one before ends, in the network's own bookkeeping; ``done`` fires after the last."""

    __slots__ = ("rounds", "index", "nbytes", "messages", "done", "owner")

    def __init__(self, rounds: list[list[tuple[str, str]]], nbytes: int, messages: int, owner: object = None) -> None:
        self.rounds, self.index, self.nbytes, self.messages = rounds, 0, nbytes, messages
        self.done: simpy.Event | None = None
        self.owner = owner


class _Join:
    """The transfers of one round still in flight; when the last ends, ``chain``'s next round
    starts (or ``done`` fires, for a lone round)."""

    __slots__ = ("left", "done", "chain", "owner")

    def __init__(self, left: int, done: simpy.Event | None, chain: _Chain | None, owner: object = None) -> None:
        self.left = left
        self.done = done
        self.chain = chain
        self.owner = owner


class _Flow:
    """A transfer in flight under the fair-share model."""

    __slots__ = ("remaining", "latency_left", "links", "speed", "rate", "updated", "version", "join")

    def __init__(self, nbytes: float, latency_s: float, links: tuple["_FairLink", ...], speed: float,
                 join: _Join) -> None:
        self.remaining = float(nbytes)
        self.latency_left = latency_s
        self.links = links
        self.speed = speed
        """Measured / data-sheet speed of the route (1 without a link fit)."""
        self.rate = 0.0
        self.updated = 0.0
        self.version = 0
        self.join = join


class _FairLink:
    __slots__ = ("bytes_per_s", "flows", "share", "alone")

    def __init__(self, bytes_per_s: float) -> None:
        self.bytes_per_s = bytes_per_s
        self.flows: dict[_Flow, None] = {}  # insertion-ordered: deterministic iteration
        self.share = bytes_per_s
        """``bytes_per_s / len(flows)``, kept up to date as flows come and go."""
        self.alone: _AloneRound | None = None
        """The round priced in closed form that has this link to itself, if any."""


class _Alone:
    """How one round evolves on links nothing else uses, in time from its start: each flow's
    end and its (time, remaining bytes, latency left, rate) after every re-timing. The same
    arithmetic as the flows in the network; computed once per round shape and size."""

    __slots__ = ("end", "finish", "states")

    def __init__(self, end: float, finish: list[float], states: list[list[tuple[float, float, float, float]]]) -> None:
        self.end, self.finish, self.states = end, finish, states


class _AloneRound:
    """A round running in closed form: no flows of its own until another transfer needs one of
    its links (then :meth:`FairShareNetwork._materialise` turns it into flows as they stand)."""

    __slots__ = ("t0", "alone", "started", "links", "done", "chain", "version", "owner")

    def __init__(self, t0: float, alone: _Alone, started: tuple, links: tuple, done: simpy.Event | None,
                 chain: _Chain | None, owner: object = None) -> None:
        self.t0, self.alone, self.started, self.links = t0, alone, started, links
        self.done, self.chain = done, chain
        self.version = 1
        self.owner = owner


class _ChainAlone:
    """The rest of a collective's rounds running back to back in closed form, on links nothing else
    uses: one heap entry for the last round's end instead of one per round. When another transfer
    needs one of its links, :meth:`FairShareNetwork._split` turns it into the round running then
    (an :class:`_AloneRound`) and the chain goes on round by round."""

    __slots__ = ("t0", "end", "plan", "links", "chain", "version", "owner", "marking")

    def __init__(self, t0: float, plan: "_ChainPlan", chain: _Chain, owner: object) -> None:
        self.t0, self.plan, self.links, self.chain = t0, plan, plan.links, chain
        self.marking = True
        """Its links point at it (until its end or a split)."""
        self.end = t0
        for *_, end in plan.ends(t0):
            self.end = end
        self.version = 1
        self.owner = owner


class _ChainPlan:
    """A chain's rounds from one index on, at one size, on idle links: each round that moves anything
    with its prepared routes and closed form, and every link any of them uses. Built once per
    (rounds, index, bytes, messages)."""

    __slots__ = ("rounds", "steps", "links")

    def __init__(self, rounds: list, steps: list[tuple[int, tuple, _Alone]], links: tuple) -> None:
        self.rounds, self.steps, self.links = rounds, steps, links
        """``steps``: (round index, prepared round, its closed form), the rounds with a route to cross."""

    def ends(self, t0: float) -> Iterator[tuple[int, tuple, _Alone, float, float]]:
        """(round index, prepared, closed form, its start, its end) in order, started back to back from ``t0``
        with the arithmetic round-by-round starts use (each start the one before plus its closed-form end)."""
        t = t0
        for index, prepared, prices in self.steps:
            end = t + prices.end
            yield index, prepared, prices, t, end
            t = end


_SHARE = operator.attrgetter("share")


class FairShareNetwork(Network):
    """``fair`` model: every link's bandwidth shared equally by the transfers crossing it.

    A transfer first pays its route latency, during which it already counts as a user of
    its links (the latency is microseconds), then moves its bytes at ``min over its links of
    bandwidth / users``. When a transfer starts or ends, only the transfers sharing a link
    with it get their progress brought up to date and a new rate (a transfer alone on its
    links is priced in closed form once).

    Why it is fast: completions live in the network's own heap (``(time, order, flow,
    version)``; a re-timed flow's old entry is skipped by version), and the network keeps
    one simpy timer, for the earliest completion, instead of one per flow and per re-timing;
    a round of transfers (:meth:`start_round`) is one simpy event, not one process per
    transfer; a collective whose links are all idle runs all its rounds as one closed form, one
    heap entry (:class:`_ChainAlone`), until another transfer needs one of its links.
    Completion times are the same sums as one timer per flow gives (``now + latency +
    remaining / rate``); ``tests/simulator/test_network_reference.py`` checks the
    times against the earlier one-timer-per-flow model on random transfer sets.
    """

    def __init__(self, env: simpy.Environment, cluster: ClusterGraph, *, bandwidth_scale: float = 1.0,
                 link_fits: dict[str, LinkFit] | None = None) -> None:
        super().__init__(env, cluster, bandwidth_scale=bandwidth_scale, link_fits=link_fits)
        self._fair_links: dict[LinkId, _FairLink] = {}
        self._fair_routes: dict[tuple[LinkId, ...], tuple[tuple[_FairLink, ...], float, float]] = {}
        self._binds: dict[LinkId, bool] = {}
        self._heap: list[tuple[float, int, _Flow, int]] = []
        self._order = 0
        self._wake_s = float("inf")
        """When the pending simpy timer fires (inf: none pending)."""
        self._waking = False
        self._rounds: dict[tuple, tuple] = {}
        """Moves of a round → its routes' states, the links they use, its routes and its closed forms
        alone on its links by (bytes, messages), built once per simulation."""
        self._values: dict[int, object] = {}
        """id(done) → the value it fires with (:meth:`start_round`)."""
        self._chains_marking = 0
        """Closed-form chains whose links point at them (none: a round start need not look for one)."""
        self._chain_plans: dict[tuple[int, int, int, int], _ChainPlan] = {}
        """(id(rounds), index, bytes, messages) → the closed form of the rest of a chain (no steps: nothing
        moves); each plan holds its rounds, so the id is not reused while it is kept."""

    def _route_state(self, route: Route) -> tuple[tuple[_FairLink, ...], float, float]:
        """(links that can bind, measured / data-sheet speed, latency per message) of ``route``, built once.

        A link that is never the slowest share on any route through it (:func:`never_binding`) is left
        out: it cannot change a rate, and on routes between nodes it is a third of the links to track."""
        out = self._fair_routes.get(route.links)
        if out is None:
            made = []
            for link in route.links:
                binds = self._binds.get(link)
                if binds is None:
                    binds = self._binds[link] = not never_binding(self.cluster, link)
                if not binds:
                    continue
                state = self._fair_links.get(link)
                if state is None:
                    bandwidth = self.cluster.link(link)["bandwidth_gb_s"] * 1e9 * self.bandwidth_scale
                    state = self._fair_links[link] = _FairLink(bandwidth)
                made.append(state)
            speed = self.route_bytes_per_s(route) / (route.bottleneck_gb_s * 1e9 * self.bandwidth_scale)
            out = self._fair_routes[route.links] = (tuple(made), speed, self.latency_s(route))
        return out

    def _retime(self, flow: _Flow, now: float) -> None:
        """Give ``flow`` its rate under today's sharing; its completion stands when the rate is unchanged
        (bytes at one rate from its last update: the same end, to rounding)."""
        rate = flow.speed * min(map(_SHARE, flow.links))
        if rate == flow.rate:
            return
        elapsed = now - flow.updated  # bring its progress up to now, at the old rate (inline: the hottest call)
        if elapsed > 0:
            latency_left = flow.latency_left
            waiting = latency_left if latency_left < elapsed else elapsed
            flow.latency_left = latency_left = latency_left - waiting
            remaining = flow.remaining - flow.rate * (elapsed - waiting)
            flow.remaining = remaining = remaining if remaining > 0.0 else 0.0
        else:
            latency_left, remaining = flow.latency_left, flow.remaining
        flow.updated = now
        flow.rate = rate
        version = flow.version = flow.version + 1
        order = self._order = self._order + 1
        heapq.heappush(self._heap, (now + (latency_left + remaining / rate), order, flow, version))

    def _arm(self) -> None:
        """Make sure a simpy timer fires at the earliest live completion."""
        if self._waking:
            return  # :meth:`_wake` arms once it is done
        heap = self._heap
        while heap and heap[0][3] != heap[0][2].version:
            heapq.heappop(heap)
        if heap and heap[0][0] < self._wake_s:
            at = self._wake_s = heap[0][0]
            timer = self.env.timeout(at - self.env.now)
            timer.callbacks.append(lambda _ev, t=at: self._wake(t))

    def _wake(self, at: float) -> None:
        if at != self._wake_s:
            return  # superseded by an earlier timer
        self._wake_s = float("inf")
        now, heap = self.env.now, self._heap
        self._waking = True
        while heap and heap[0][0] <= now:
            due: list[_Flow] = []
            ended: list[_AloneRound | _ChainAlone] = []
            while heap and heap[0][0] <= now:
                _, _, flow, version = heapq.heappop(heap)
                if version == flow.version:
                    flow.version = -1  # its later entries are dead
                    (due if type(flow) is _Flow else ended).append(flow)
            if due:
                self._finish(due, now)
            for alone in ended:
                if type(alone) is _ChainAlone:
                    self._unmark(alone)
                    self._chain_ended(alone)
                else:
                    for link in alone.links:
                        if link.alone is alone:
                            link.alone = None
                    self._round_ended(alone.done, alone.chain)
        self._waking = False
        self._arm()

    def _finish(self, due: list[_Flow], now: float) -> None:
        """End the flows ``due`` now, together: the flows they shared a link with are re-timed once."""
        links: dict[_FairLink, None] = {}
        for flow in due:
            for link in flow.links:
                del link.flows[flow]
                links[link] = None
        neighbours: dict[_Flow, None] = {}
        for link in links:
            link.share = link.bytes_per_s / len(link.flows) if link.flows else link.bytes_per_s
            neighbours.update(link.flows)
        for other in neighbours:
            self._retime(other, now)
        for flow in due:
            join = flow.join
            join.left -= 1
            if join.left == 0:
                self._round_ended(join.done, join.chain)

    def _round_ended(self, done: simpy.Event | None, chain: _Chain | None) -> None:
        if chain is None:
            done.succeed(self._values.pop(id(done), None) if self._values else None)
        elif not self._next_round(chain):
            chain.done.succeed()

    def _alone_prices(self, started: tuple, links_used: tuple, nbytes: int, messages: float) -> _Alone:
        """The round alone on its links: the network's own re-timing, without the network."""
        n = len(started)
        if n == 1 and len(links_used) == len(started[0][1]):  # one transfer (a stage send): no re-timing
            _, links, speed, latency = started[0]
            rate1 = speed * min(link.bytes_per_s / 1 for link in links)
            lat1 = messages * latency
            end = 0.0 + (lat1 + float(nbytes) / rate1)  # the loop below's arithmetic for one flow
            return _Alone(end, [end], [[(0.0, float(nbytes), lat1, rate1)]])
        count = dict.fromkeys(links_used, 0)
        users: dict[_FairLink, list[int]] = {link: [] for link in links_used}
        for i, (_, links, _, _) in enumerate(started):
            for link in links:
                count[link] += 1
                users[link].append(i)
        rem = [float(nbytes)] * n
        lat = [messages * latency for _, _, _, latency in started]
        updated, rate, finish = [0.0] * n, [0.0] * n, [0.0] * n
        states: list[list[tuple[float, float, float, float]]] = [[] for _ in range(n)]

        def retime(i: int, now: float) -> None:
            _, links, speed, _ = started[i]
            rate[i] = speed * min(link.bytes_per_s / count[link] for link in links)
            finish[i] = now + (lat[i] + rem[i] / rate[i])
            states[i].append((now, rem[i], lat[i], rate[i]))

        for i in range(n):
            retime(i, 0.0)
        live = set(range(n))
        while live:
            t = min(finish[i] for i in live)
            due = [i for i in live if finish[i] <= t]
            live.difference_update(due)
            for i in due:
                for link in started[i][1]:
                    count[link] -= 1
            neighbours = sorted({j for i in due for link in started[i][1] for j in users[link] if j in live})
            for j in neighbours:
                elapsed = t - updated[j]
                if elapsed > 0:
                    waiting = min(lat[j], elapsed)
                    lat[j] -= waiting
                    rem[j] = max(rem[j] - rate[j] * (elapsed - waiting), 0.0)
                updated[j] = t
                retime(j, t)
        return _Alone(max(finish), finish, states)

    def _materialise(self, alone: _AloneRound, now: float) -> None:
        """Turn a closed-form round into its flows as they stand ``now`` (another transfer needs its links)."""
        for link in alone.links:
            link.alone = None
        prices, t0 = alone.alone, alone.t0
        if now >= t0 + prices.end:
            return  # its last flows end now: its heap entry ends the round
        alone.version = -1
        live = [i for i in range(len(alone.started)) if t0 + prices.finish[i] > now]
        join = _Join(len(live), alone.done, alone.chain, alone.owner)
        started_by = lambda state: t0 + state[0]  # noqa: E731 - the key the scan compared on, in its arithmetic
        for i in live:
            states = prices.states[i]  # by time: its last re-timing at or before now is the state it is in
            at, remaining, latency_left, rate = states[max(bisect.bisect_right(states, now, key=started_by) - 1, 0)]
            _, links, speed, _ = alone.started[i]
            flow = _Flow(remaining, latency_left, links, speed, join)
            flow.rate, flow.updated, flow.version = rate, t0 + at, 1
            for link in links:
                link.flows[flow] = None
            self._order += 1  # the end its last re-timing gave (not the alone end: its neighbours may now be slower)
            heapq.heappush(self._heap, (flow.updated + (latency_left + remaining / rate), self._order, flow, 1))
        for link in alone.links:
            link.share = link.bytes_per_s / len(link.flows) if link.flows else link.bytes_per_s

    def start_round(self, moves: list[tuple[str, str]], nbytes: int, messages: float = 1, *,
                    done: simpy.Event | None = None, value: object = None) -> simpy.Event | None:
        """Start one transfer of ``nbytes`` per ``(src, dst)`` now; the event fires when all have
        ended (None: nothing to move). The flows already on their links are re-timed once.

        ``done``: the event to fire (a new one by default), with ``value``: a send fires the
        receiver's input event itself, one simpy event fewer per send. ``messages``: latencies each
        transfer pays (a share of one for a stage send whose ends' CPU is charged apart: :meth:`message_cpu`)."""
        if nbytes <= 0 and messages <= 0:
            return None
        done = self.env.event() if done is None else done
        if value is not None:
            self._values[id(done)] = value
        if self._start(moves, nbytes, messages, done, None):
            return done
        self._values.pop(id(done), None)
        return None

    def start_rounds(self, rounds: list[list[tuple[str, str]]], nbytes: int,
                     messages: int = 1) -> simpy.Event | None:
        """Start ``rounds`` back to back, each ``nbytes`` per ``(src, dst)``, the first now; the
        event fires when the last has ended (None: nothing to move). The same times as waiting for
        each round's event before starting the next, without a simpy event per round."""
        if nbytes <= 0 and messages <= 0:
            return None
        chain = _Chain(rounds, nbytes, messages, self.owner)
        if not self._next_round(chain):
            return None
        chain.done = self.env.event()
        return chain.done

    def _next_round(self, chain: _Chain) -> bool:
        """Start ``chain``'s next round that moves anything; False when none is left. When every link the
        rest of the chain uses is idle, the rest runs in closed form (:class:`_ChainAlone`)."""
        if chain.index < len(chain.rounds) - 1:
            plan = self._chain_plan(chain)
            if plan is None:
                chain.index = len(chain.rounds)
                return False
            if _idle(plan.links):
                now = self.env.now
                alone = _ChainAlone(now, plan, chain, chain.owner)
                for link in plan.links:
                    link.alone = alone
                self._chains_marking += 1
                self._order += 1
                heapq.heappush(self._heap, (alone.end, self._order, alone, 1))
                self._arm()
                return True
        while chain.index < len(chain.rounds):
            moves = chain.rounds[chain.index]
            chain.index += 1
            if self._start(moves, chain.nbytes, chain.messages, None, chain):
                return True
        return False

    def _chain_plan(self, chain: _Chain) -> _ChainPlan | None:
        """The closed form of ``chain``'s rounds from its index on (None: none of them moves anything)."""
        key = (id(chain.rounds), chain.index, chain.nbytes, chain.messages)
        plan = self._chain_plans.get(key)
        if plan is None or plan.rounds is not chain.rounds:
            steps, used = [], {}
            for index in range(chain.index, len(chain.rounds)):
                started, links_used, routes, memo = prepared = self._prepared(chain.rounds[index])
                if started:
                    steps.append((index, prepared, self._alone_memo(memo, started, links_used, chain.nbytes,
                                                                    chain.messages)))
                    used.update(dict.fromkeys(links_used))
            plan = self._chain_plans[key] = _ChainPlan(chain.rounds, steps, tuple(used))
        return plan if plan.steps else None

    def _unmark(self, alone: _ChainAlone) -> None:
        """Its links stop pointing at it."""
        if alone.marking:
            alone.marking = False
            self._chains_marking -= 1
            for link in alone.links:
                if link.alone is alone:
                    link.alone = None

    def _chain_ended(self, alone: _ChainAlone) -> None:
        chain = alone.chain
        for _, (_, _, routes, _), _ in alone.plan.steps:
            self.traffic.add_round(routes, int(chain.nbytes))
        chain.index = len(chain.rounds)
        self._round_ended(None, chain)

    def _split(self, alone: _ChainAlone, now: float) -> None:
        """Turn a closed-form chain into the round it is running ``now`` (another transfer needs one of its
        links): rounds that ended at or before ``now`` are done, the next starts where the one before ended."""
        self._unmark(alone)
        if now >= alone.end:
            return  # its last round ends now: its heap entry ends the chain
        alone.version = -1
        chain = alone.chain
        for index, (started, links_used, routes, _), prices, t, end in alone.plan.ends(alone.t0):
            self.traffic.add_round(routes, int(chain.nbytes))
            if end > now:
                break
        chain.index = index + 1
        current = _AloneRound(t, prices, started, links_used, None, chain, alone.owner)
        for link in links_used:
            link.alone = current
        self._order += 1
        heapq.heappush(self._heap, (end, self._order, current, 1))

    def _prepared(self, moves: list[tuple[str, str]] | tuple) -> tuple:
        """A round's routes' states, the links they use, its routes and its closed forms by (bytes, messages)."""
        key = moves if type(moves) is tuple else tuple(moves)
        prepared = self._rounds.get(key)
        if prepared is None:
            started = []
            for src, dst in moves:
                route = self.cluster.route(src, dst)
                if route.links:
                    started.append((route, *self._route_state(route)))
            used: dict[_FairLink, None] = {}
            for _, links, _, _ in started:
                used.update(dict.fromkeys(links))
            prepared = self._rounds[key] = (tuple(started), tuple(used), tuple(r for r, _, _, _ in started), {})
        return prepared

    def _start(self, moves: list[tuple[str, str]], nbytes: int, messages: float, done: simpy.Event | None,
               chain: _Chain | None) -> bool:
        """Start one round's flows now (False: none has a route to cross)."""
        now = self.env.now
        started, links_used, routes, alone_memo = self._prepared(moves)
        if not started:
            return False
        idle = _idle(links_used)
        if not idle and self._chains_marking and any(type(link.alone) is _ChainAlone for link in links_used):
            for link in links_used:  # a closed-form chain on these links becomes the round it is running
                if type(link.alone) is _ChainAlone:
                    self._split(link.alone, now)
            idle = _idle(links_used)
        if idle:
            self.traffic.add_round(routes, int(nbytes))
            return self._start_alone(alone_memo, started, links_used, nbytes, messages, done, chain, now)
        for link in links_used:
            if link.alone is not None:
                self._materialise(link.alone, now)
        join = _Join(len(started), done, chain, chain.owner if chain is not None else self.owner)
        touched: dict[_Flow, None] = {}
        for link in links_used:
            touched.update(link.flows)
        self.traffic.add_round(routes, int(nbytes))
        for route, links, speed, latency in started:
            flow = _Flow(nbytes, messages * latency, links, speed, join)
            flow.updated = now
            for link in links:
                link.flows[flow] = None
            touched[flow] = None
        for link in links_used:
            link.share = link.bytes_per_s / len(link.flows)
        for flow in touched:
            self._retime(flow, now)
        self._arm()
        return True

    def _alone_memo(self, memo: dict[tuple[int, float], _Alone], started: tuple, links_used: tuple, nbytes: int,
                    messages: float) -> _Alone:
        prices = memo.get((nbytes, messages))
        if prices is None:
            prices = memo[(nbytes, messages)] = self._alone_prices(started, links_used, nbytes, messages)
        return prices

    def _start_alone(self, memo: dict[tuple[int, float], _Alone], started: tuple, links_used: tuple, nbytes: int,
                     messages: float, done: simpy.Event | None, chain: _Chain | None, now: float) -> bool:
        """A round on idle links: priced in closed form (memoised per round in ``memo``), one heap entry for its end."""
        prices = self._alone_memo(memo, started, links_used, nbytes, messages)
        alone = _AloneRound(now, prices, started, links_used, done, chain,
                            chain.owner if chain is not None else self.owner)
        for link in links_used:
            link.alone = alone
        self._order += 1
        heapq.heappush(self._heap, (now + prices.end, self._order, alone, 1))
        self._arm()
        return True

    def state(self, now: float, relative: "Callable[[object], object]") -> list[tuple]:
        """Every round in flight, in a canonical order, with times relative to ``now`` and owners
        mapped by ``relative`` (:mod:`simulator.periodic` compares these between two step starts).

        Each entry: ``(owner, chain position, kind, …)``; a closed-form round gives its start and
        its memoised prices, a round of flows each flow's links, bytes and latency left, rate and
        last update. Superseded heap entries and timers are left out: they do nothing when they fire.
        """
        ids = self._link_ids()
        rounds: dict[int, list] = {}
        for _, _, item, version in self._heap:
            if version != item.version:
                continue
            if type(item) is _AloneRound:
                chain = item.chain
                rounds[id(item)] = [relative(item.owner), _chain_state(chain), "alone", item.t0 - now, id(item.alone)]
                continue
            if type(item) is _ChainAlone:
                rounds[id(item)] = [relative(item.owner), _chain_state(item.chain), "chain", item.t0 - now, id(item.plan)]
                continue
            join = item.join
            entry = rounds.get(id(join))
            if entry is None:
                entry = rounds[id(join)] = [relative(join.owner), _chain_state(join.chain), "flows", join.left, []]
            entry[4].append((tuple(ids[id(link)] for link in item.links), item.remaining, item.latency_left,
                             item.rate, item.updated - now, item.speed))
        out = []
        for entry in rounds.values():
            if entry[2] == "flows":
                entry[4] = tuple(sorted(entry[4]))
            out.append(tuple(entry))
        return sorted(out, key=repr)

    def _link_ids(self) -> dict[int, LinkId]:
        return {id(state): link for link, state in self._fair_links.items()}

    def transfer(self, src: str, dst: str, nbytes: int, messages: float = 1) -> Generator:
        """A simpy process: move ``nbytes`` from device ``src`` to ``dst`` (free when they are the same)."""
        done = self.start_round([(src, dst)], nbytes, messages)
        if done is not None:
            yield done


def never_binding(cluster: ClusterGraph, link: LinkId) -> bool:
    """Whether ``link``'s equal share can never be the smallest on a route through it, so leaving it
    out of every rate changes no rate (not even in the last bit).

    Where an end of the link is a relay with only two neighbours (a NIC between its switch and the
    fabric), every route through the link also takes the link on the relay's other side, so that
    link carries at least as many transfers; when it is also no faster (ties broken by name), its
    share is never larger. Following such links from one to the next ends at one that can bind,
    which is on every route through the ones left out."""
    graph, (u, v) = cluster.graph, link
    own = (graph.edges[link]["bandwidth_gb_s"], link)
    beside = [(w, u) for w in graph.neighbors(u) if w != v] if _relay_of_two(graph, u) else []
    beside += [(v, x) for x in graph.neighbors(v) if x != u] if _relay_of_two(graph, v) else []
    return any((graph.edges[other]["bandwidth_gb_s"], other) < own for other in beside)


def _relay_of_two(graph, node: str) -> bool:
    """A graph node no route starts or ends at, with exactly two neighbours."""
    return graph.nodes[node]["kind"] != "gpu" and graph.degree(node) == 2


def _idle(links: tuple[_FairLink, ...]) -> bool:
    """No flow and no closed-form round on any of ``links``."""
    for link in links:
        if link.flows or link.alone is not None:
            return False
    return True


def _chain_state(chain: _Chain | None) -> tuple | None:
    return None if chain is None else (chain.index, len(chain.rounds), chain.nbytes, chain.messages)


NETWORK_MODELS = {"fair": FairShareNetwork, "fifo": Network}
"""Contention model name → network class (see the module docstring)."""
