"""The fair-share network as it was before issue 14's rewrite: one simpy timer per flow, re-set
for every flow sharing a link whenever a transfer starts or ends.

Kept only as the reference :mod:`tests.simulator.test_network_reference` compares
:class:`simulator.network.FairShareNetwork` against on random transfer sets.
"""

from __future__ import annotations

from typing import Generator

import simpy

from profiles.topology.graph import ClusterGraph, LinkId, Route
from simulator.network import LinkFit, Network


class _Flow:
    """A transfer in flight under the fair-share model."""

    __slots__ = ("remaining", "latency_left", "links", "speed", "rate", "updated", "version", "done")

    def __init__(self, nbytes: float, latency_s: float, links: tuple["_FairLink", ...], speed: float,
                 done: simpy.Event) -> None:
        self.remaining = float(nbytes)
        self.latency_left = latency_s
        self.links = links
        self.speed = speed
        """Measured / data-sheet speed of the route (1 without a link fit)."""
        self.rate = 0.0
        self.updated = 0.0
        self.version = 0
        self.done = done


class _FairLink:
    __slots__ = ("bytes_per_s", "flows")

    def __init__(self, bytes_per_s: float) -> None:
        self.bytes_per_s = bytes_per_s
        self.flows: dict[_Flow, None] = {}  # insertion-ordered: deterministic iteration


class ReferenceFairShareNetwork(Network):
    """``fair`` model: every link's bandwidth shared equally by the transfers crossing it.

    A transfer first pays its route latency, during which it already counts as a user of
    its links (the latency is microseconds; this keeps one event per uncontended transfer),
    then moves its bytes at ``min over its links of bandwidth / users``. When a transfer
    starts or ends, the transfers sharing a link with it get their progress brought up to
    date and a new rate, and their completion is rescheduled (stale completions are
    ignored by version number).
    """

    def __init__(self, env: simpy.Environment, cluster: ClusterGraph, *, bandwidth_scale: float = 1.0,
                 link_fits: dict[str, LinkFit] | None = None) -> None:
        super().__init__(env, cluster, bandwidth_scale=bandwidth_scale, link_fits=link_fits)
        self._fair_links: dict[LinkId, _FairLink] = {}
        self._fair_routes: dict[tuple[LinkId, ...], tuple[_FairLink, ...]] = {}

    def _route_links(self, route: Route) -> tuple[_FairLink, ...]:
        out = self._fair_routes.get(route.links)
        if out is None:
            made = []
            for link in route.links:
                state = self._fair_links.get(link)
                if state is None:
                    bandwidth = self.cluster.link(link)["bandwidth_gb_s"] * 1e9 * self.bandwidth_scale
                    state = self._fair_links[link] = _FairLink(bandwidth)
                made.append(state)
            out = self._fair_routes[route.links] = tuple(made)
        return out

    def _advance(self, flow: _Flow, now: float) -> None:
        elapsed = now - flow.updated
        if elapsed > 0:
            waiting = min(flow.latency_left, elapsed)
            flow.latency_left -= waiting
            flow.remaining = max(flow.remaining - flow.rate * (elapsed - waiting), 0.0)
        flow.updated = now

    def _reschedule(self, flow: _Flow) -> None:
        flow.rate = flow.speed * min(link.bytes_per_s / len(link.flows) for link in flow.links)
        flow.version += 1
        version = flow.version
        timer = self.env.timeout(flow.latency_left + flow.remaining / flow.rate)
        timer.callbacks.append(lambda _ev, f=flow, v=version: self._finish(f, v))

    def _neighbours(self, flow: _Flow) -> dict[_Flow, None]:
        out: dict[_Flow, None] = {}
        for link in flow.links:
            for other in link.flows:
                if other is not flow:
                    out[other] = None
        return out

    def _finish(self, flow: _Flow, version: int) -> None:
        if version != flow.version:
            return  # rescheduled since
        now = self.env.now
        neighbours = self._neighbours(flow)
        for other in neighbours:
            self._advance(other, now)
        for link in flow.links:
            del link.flows[flow]
        for other in neighbours:
            self._reschedule(other)
        flow.done.succeed()

    def transfer(self, src: str, dst: str, nbytes: int, messages: int = 1) -> Generator:
        """A simpy process: move ``nbytes`` from device ``src`` to ``dst`` (free when they are the same)."""
        route = self.cluster.route(src, dst)
        if not route.links or (nbytes <= 0 and messages <= 0):
            return
        self.traffic.add(route, int(nbytes))
        now = self.env.now
        speed = self.route_bytes_per_s(route) / (route.bottleneck_gb_s * 1e9 * self.bandwidth_scale)
        flow = _Flow(nbytes, messages * self.latency_s(route), self._route_links(route), speed, self.env.event())
        flow.updated = now
        neighbours: dict[_Flow, None] = {}
        for link in flow.links:
            for other in link.flows:
                neighbours[other] = None
        for other in neighbours:
            self._advance(other, now)
        for link in flow.links:
            link.flows[flow] = None
        for other in neighbours:
            self._reschedule(other)
        self._reschedule(flow)
        yield flow.done
