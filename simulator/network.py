"""The network: every directed link of the topology is a simpy resource that carries one transfer at a time.

Following ns.py, a transfer's time is its propagation delay (the route's summed link
latencies, once per message) plus its serialisation delay (bytes over the route's
bottleneck bandwidth). A transfer holds *every* link on its route for that whole time, so
two transfers that share any link (a PCIe switch uplink, the cross-socket link) run one
after the other, while transfers over disjoint links overlap. Links are acquired in one
global order (sorted link ids), so two transfers can never each hold a link the other waits
for (no deadlock). This is a circuit-switched approximation: a real link would share its
bandwidth between concurrent flows instead of queueing them; the total time of a set of
contending transfers is the same, the order of their completions is not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections import deque
from typing import Generator

import simpy

from profiles.topology_graph import ClusterGraph, LinkId, Route


@dataclass
class TrafficLog:
    """Bytes moved, counted once per transfer (by route class) and at both ends (per device)."""

    by_route_class: dict[str, int] = field(default_factory=dict)
    sent_by_device: dict[str, int] = field(default_factory=dict)
    received_by_device: dict[str, int] = field(default_factory=dict)
    by_link: dict[LinkId, int] = field(default_factory=dict)
    transfers: int = 0

    def add(self, route: Route, nbytes: int) -> None:
        self.transfers += 1
        self.by_route_class[route.route_class] = self.by_route_class.get(route.route_class, 0) + nbytes
        self.sent_by_device[route.src] = self.sent_by_device.get(route.src, 0) + nbytes
        self.received_by_device[route.dst] = self.received_by_device.get(route.dst, 0) + nbytes
        for link in route.links:
            self.by_link[link] = self.by_link.get(link, 0) + nbytes


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
    """Links of ``cluster`` as capacity-1 resources in ``env``.

    ``bandwidth_scale`` multiplies every link's bandwidth (what-if studies and the
    monotonicity property tests).
    """

    def __init__(self, env: simpy.Environment, cluster: ClusterGraph, *, bandwidth_scale: float = 1.0) -> None:
        self.env = env
        self.cluster = cluster
        self.bandwidth_scale = bandwidth_scale
        self.traffic = TrafficLog()
        self._links: dict[LinkId, Link] = {}
        self._order: dict[tuple[LinkId, ...], tuple[Link, ...]] = {}

    def _held_links(self, links: tuple[LinkId, ...]) -> tuple[Link, ...]:
        """The route's links as resources, in the one global acquisition order (sorted ids)."""
        out = self._order.get(links)
        if out is None:
            out = self._order[links] = tuple(self._links.setdefault(link, Link()) for link in sorted(links))
        return out

    def duration_s(self, route: Route, nbytes: float, messages: int = 1) -> float:
        """Time of a transfer alone on ``route``: ``messages`` latencies plus bytes over the bottleneck."""
        if not route.links:
            return 0.0
        return messages * route.latency_us * 1e-6 + nbytes / (route.bottleneck_gb_s * 1e9 * self.bandwidth_scale)

    def transfer(self, src: str, dst: str, nbytes: int, messages: int = 1) -> Generator:
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
