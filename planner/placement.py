"""Rank → device placement: chatty groups on the fastest routes, CFG and data outermost.

Ranks are numbered row-major over :data:`simulator.rank_groups.AXES`. A placement is a
*nesting order* of the axes (outermost first) applied to an ordered list of devices: the
innermost axis varies fastest along the device list, so its groups land on neighbouring
devices. With devices sorted by host, socket and PCIe switch ("grouped"), neighbours share
the nearest route class.

Worked example, ``cfg2 × pipefusion2`` on pcie8's first four GPUs (gpu0..3; gpu0-1 and
gpu2-3 share a switch)::

    nesting (cfg, pipefusion):  rank0→gpu0 rank1→gpu1 rank2→gpu2 rank3→gpu3
        pipeline hops 0→1, 2→3 inside a switch (PIX); the CFG exchange crosses switches
    nesting (pipefusion, cfg):  rank0→gpu0 rank1→gpu2 rank2→gpu1 rank3→gpu3
        pipeline hops cross switches; CFG pairs share one

Alternatives generated, compared later by simulation:

- ``topology``: the topology file's device order and the standard nesting (AXES order).
- ``grouped``: devices sorted by host/socket/switch, standard nesting.
- ``greedy``: devices grouped, axes nested by the traffic each sends per step (each
  strategy's placement preference, :meth:`~simulator.strategies.base.Strategy.traffic_bytes`;
  the heaviest innermost), and the device subset, when fewer than all devices are used,
  chosen to keep the worst route class inside the used set as near as possible.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.catalog.models import ModelPreset
from profiles.topology.graph import ROUTE_CLASSES, ClusterGraph
from simulator.plan import DegreesBase, ParallelPlan
from simulator.rank_groups import AXES
from simulator.strategies import STRATEGIES
from simulator.strategies.base import TrafficContext

CLASS_ORDER = {name: i for i, name in enumerate(("X",) + ROUTE_CLASSES)}


@dataclass(frozen=True)
class Placement:
    name: str
    devices: tuple[str, ...]
    """Device of each rank."""


def device_path(cluster: ClusterGraph, device: str) -> tuple[str, ...]:
    """The chain of graph nodes from ``device`` up to its socket (PCIe tree), device first."""
    graph = cluster.graph
    path, node, seen = [device], device, {device}
    while graph.nodes[node]["kind"] != "socket":
        parents = [n for n in graph.neighbors(node)
                   if n not in seen and graph.nodes[n]["kind"] in ("switch", "socket")]
        if not parents:
            break
        node = parents[0]
        seen.add(node)
        path.append(node)
    return tuple(path)


def grouped_devices(cluster: ClusterGraph) -> list[str]:
    """Devices sorted host, socket, switch chain (outermost first), keeping topology order within
    (computed once per cluster)."""
    cached = getattr(cluster, "_grouped_devices", None)
    if cached is not None:
        return list(cached)
    order = {d: i for i, d in enumerate(cluster.devices)}

    def key(device: str) -> tuple:
        path = device_path(cluster, device)
        return (cluster.device_host[device], tuple(reversed(path[1:])), order[device])
    grouped = sorted(cluster.devices, key=key)
    cluster._grouped_devices = tuple(grouped)  # type: ignore[attr-defined]
    return list(grouped)


def axis_traffic_bytes(degrees: DegreesBase, model: ModelPreset, height_px: int, width_px: int) -> dict[str, float]:
    """Rough bytes one rank sends per step along each active axis, as each strategy states it."""
    ctx = TrafficContext(model, model.image_tokens(height_px, width_px))
    return {s.axis: s.traffic_bytes(n, ctx) for s, n in STRATEGIES.active(degrees.as_dict()) if s.axis}


def _place(degrees: DegreesBase, devices: list[str], nesting: tuple[str, ...]) -> tuple[str, ...]:
    sizes = degrees.as_dict()
    # coords(rank)[a] = (rank // stride[a]) % size[a]: rank order is row-major over AXES
    strides, stride = {}, 1
    for axis in reversed(AXES):
        strides[axis] = stride
        stride *= sizes.get(axis, 1)
    digits = [(strides[axis], sizes[axis]) for axis in nesting]
    out = []
    for rank in range(degrees.world_size()):
        index = 0
        for st, size in digits:
            index = index * size + (rank // st) % size
        out.append(devices[index])
    return tuple(out)


def _worst_class(cluster: ClusterGraph, devices: list[str]) -> int:
    """The worst route class between any two of ``devices``.

    Devices of two hosts talk over the network, the worst class there is. On one host,
    devices with the same chain of switches and no NVLink reach every other device by the
    same kind of path, so one pair per such group of look-alikes stands for all of them:
    the cost follows the host's distinct positions, not its device count.
    """
    if len(devices) < 2:
        return 0
    if len({cluster.device_host[d] for d in devices}) > 1:
        return CLASS_ORDER["NET"]
    groups: dict[tuple, list[str]] = {}
    for device in devices:
        key = (device,) if cluster.has_nvlink(device) else device_path(cluster, device)[1:]
        groups.setdefault(key, []).append(device)
    reps = [members[:2] for members in groups.values()]
    worst = max((CLASS_ORDER[cluster.route(pair[0], pair[1]).route_class] for pair in reps if len(pair) > 1),
                default=0)
    heads = [pair[0] for pair in reps]
    return max([worst] + [CLASS_ORDER[cluster.route(a, b).route_class] for a in heads for b in heads if a != b])


def nearest_subset(cluster: ClusterGraph, ordered: list[str], count: int) -> list[str]:
    """The window of ``count`` consecutive grouped devices with the nearest worst route class.

    Windows are compared first by that class, then by position (the earliest wins), so the
    scan stops at the first window with the best class possible (within one host when it can
    be, else the first); windows that span hosts all reach the network and tie.
    """
    if count >= len(ordered):
        return list(ordered)
    best_class, best_start = None, 0
    hosts = [cluster.device_host[d] for d in ordered]
    for start in range(0, len(ordered) - count + 1):
        if hosts[start] != hosts[start + count - 1] and best_class is not None:
            continue  # spans hosts (grouped order is host by host): the network class, no better than one seen
        worst = _worst_class(cluster, ordered[start:start + count])
        if best_class is None or worst < best_class:
            best_class, best_start = worst, start
            if worst <= CLASS_ORDER["NVL"] and count > 1 or worst == 0:
                break  # nothing beats NVLink (or a single device)
    return ordered[best_start:best_start + count]


def alternatives(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, *,
                 greedy_only: bool = False) -> list[Placement]:
    """Distinct candidate placements for ``plan`` (the first is the greedy one; ``greedy_only``: just it):
    no two of one placement class (:meth:`~profiles.topology.graph.ClusterGraph.placement_class`), whose
    simulations would be the same run with the hosts renamed."""
    degrees = plan.degrees
    n = degrees.world_size()
    standard = tuple(AXES)
    traffic = axis_traffic_bytes(degrees, model, plan.height_px, plan.width_px)
    inactive = [a for a in AXES if a not in traffic]
    by_traffic = tuple(inactive + sorted(traffic, key=lambda a: (traffic[a], -AXES.index(a))))
    grouped = grouped_devices(cluster)
    greedy = Placement("greedy", _place(degrees, nearest_subset(cluster, grouped, n), by_traffic))
    if greedy_only:
        return [greedy]
    found: list[Placement] = [
        greedy,
        Placement("grouped", _place(degrees, grouped[:n], standard)),
        Placement("topology", _place(degrees, cluster.devices[:n], standard)),
    ]
    if len(traffic) > 1:
        # the reverse nesting: the lightest axis innermost, as a contrast the simulator judges.
        lightest_inner = tuple(inactive + sorted(traffic, key=lambda a: -traffic[a]))
        found.append(Placement("reversed", _place(degrees, grouped[:n], lightest_inner)))
    # one per placement class: hosts stamped from one node entry are identical and the fabric meets every
    # NIC alike, so two device lists of a class simulate alike (tests/planner/test_placement.py checks it)
    unique: list[Placement] = []
    classes: set[tuple] = set()
    for p in found:
        placement_class = cluster.placement_class(p.devices)
        if placement_class not in classes:
            classes.add(placement_class)
            unique.append(p)
    return unique


def with_placement(plan: ParallelPlan, placement: Placement) -> ParallelPlan:
    return plan.model_copy(update={"placement": list(placement.devices)})
