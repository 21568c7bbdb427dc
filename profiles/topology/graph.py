"""A topology as a networkx graph: routes, route classes, bottlenecks, shared links.

Graph nodes are devices (``node0/gpu3``), NICs, PCIe switches, sockets (host bridges),
NVSwitches and one ``fabric`` for the inter-node network. Each edge is a physical link with
``bandwidth_gb_s`` (per direction), ``latency_us`` and ``kind``; the two directions of an
edge are separate resources, named ``(u, v)``. A route between two devices takes NVLink
when they share a domain, else the PCIe tree (and the fabric between nodes). Its class is
read off the path the way NCCL names it:

=====  ========================================================================
NVL    over NVLink
PIX    through one PCIe switch
PXB    through several PCIe switches, not through a host bridge
PHB    through a socket's host bridge (root complex)
SYS    across the link between two sockets
NET    through NICs and the inter-node network
=====  ========================================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations
from typing import Iterable

import networkx as nx

from profiles.errors import InputError, TopologyError
from profiles.catalog.gpus import get_gpu
from profiles.topology.format import Node, Switch, Topology

MAX_DEVICES = 65_536
"""The most devices a topology may have: far above any cluster one generation could use,
low enough that the graph (a few hundred bytes per device) is built in seconds."""

ROUTE_CLASSES = ("NVL", "PIX", "PXB", "PHB", "SYS", "NET")
"""Nearest first, as NCCL orders them."""

LinkId = tuple[str, str]
"""A directed link: data flows from the first graph node to the second."""


def _natural_key(name: str) -> list[object]:
    """``gpu10`` after ``gpu9``: devices are listed host by host in numeric order, whatever the
    order of the switches in the file (an imported ``nvidia-smi`` GPU3 stays the fourth)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class Route:
    """The path data takes from one device to another."""

    src: str
    dst: str
    nodes: tuple[str, ...]
    links: tuple[LinkId, ...]
    route_class: str
    bottleneck_gb_s: float
    latency_us: float

    def transfer_time_s(self, nbytes: float) -> float:
        """Time of one transfer alone on this route: latency plus bytes over the bottleneck."""
        if not self.links:
            return 0.0
        return self.latency_us * 1e-6 + nbytes / (self.bottleneck_gb_s * 1e9)


class ClusterGraph:
    """The networkx view of a :class:`Topology`, with routes computed once per pair."""

    def __init__(self, topology: Topology, *, file: str | None = None) -> None:
        self.topology = topology
        self.file = file
        self.graph = nx.Graph()
        self.devices: list[str] = []
        self.device_gpu: dict[str, str] = {}
        self.device_host: dict[str, str] = {}
        self.host_node: dict[str, int] = {}
        """Host → index of its entry in ``topology.nodes`` (hosts of one entry are identical)."""
        self._routes: dict[tuple[str, str], Route] = {}
        self._nics: dict[str, list[str]] = {}
        self._check_size()
        self._build()
        hosts = {h: i for i, h in enumerate(dict.fromkeys(self.device_host.values()))}
        self.devices.sort(key=lambda d: (hosts[self.device_host[d]], _natural_key(d)))
        self._check_connected()

    # -- construction -------------------------------------------------------------------
    def _check_size(self) -> None:
        """Refuse a topology too large to be real before building anything (one line, no MemoryError)."""
        total = 0
        for i, node in enumerate(self.topology.nodes):
            per_host = sum(len(s.gpus) + sum(_switch_gpus(w) for w in s.switches) for s in node.sockets)
            total += node.count * per_host
            if total > MAX_DEVICES:
                raise self._error(f"the topology has {total:,}+ devices (nodes[{i}].count = {node.count:,}); "
                                  f"pfplan handles at most {MAX_DEVICES:,}", f"nodes[{i}].count")

    def _error(self, message: str, field: str) -> TopologyError:
        return TopologyError(message, file=self.file, field=field)

    def _add_node(self, name: str, kind: str, field: str, **attrs: object) -> None:
        if name in self.graph:
            raise self._error(f"name {name.split('/', 1)[-1]!r} is used twice", field)
        self.graph.add_node(name, kind=kind, **attrs)

    def _add_link(self, u: str, v: str, *, bandwidth_gb_s: float, latency_us: float, kind: str) -> None:
        self.graph.add_edge(u, v, bandwidth_gb_s=bandwidth_gb_s, latency_us=latency_us, kind=kind)

    def _attach(self, host: str, parent: str, gpus: list[str], nics: list[str], node: Node,
                field: str) -> None:
        for gpu in gpus:
            device = f"{host}/{gpu}"
            self._add_node(device, "gpu", f"{field}.gpus", host=host)
            self.devices.append(device)
            self.device_gpu[device] = node.gpu
            self.device_host[device] = host
            self._add_link(device, parent, kind="pcie", **node.device_link.model_dump())
        for nic in nics:
            self._add_node(f"{host}/{nic}", "nic", f"{field}.nics", host=host)
            self._nics.setdefault(host, []).append(f"{host}/{nic}")
            self._add_link(f"{host}/{nic}", parent, kind="pcie", **node.device_link.model_dump())

    def _add_switch(self, host: str, parent: str, switch: Switch, node: Node, field: str) -> None:
        name = f"{host}/{switch.name}"
        self._add_node(name, "switch", field, host=host)
        self._add_link(name, parent, kind="pcie", **switch.uplink.model_dump())
        self._attach(host, name, switch.gpus, switch.nics, node, field)
        for k, child in enumerate(switch.switches):
            self._add_switch(host, name, child, node, f"{field}.switches[{k}]")

    def _build(self) -> None:
        topo = self.topology
        if topo.host_count() > 1 and topo.network is not None:
            self.graph.add_node("fabric", kind="fabric", host=None)
        for i, node in enumerate(topo.nodes):
            field = f"nodes[{i}]"
            try:
                get_gpu(node.gpu)
            except InputError as exc:
                raise self._error(exc.message, f"{field}.gpu") from None
            if len(node.sockets) > 1 and node.socket_link is None:
                raise self._error("a node with several sockets needs socket_link", f"{field}.socket_link")
            for host in node.host_names():
                self.host_node[host] = i
                sockets = []
                for s, socket in enumerate(node.sockets):
                    sname = f"{host}/{socket.name}"
                    sockets.append(sname)
                    self._add_node(sname, "socket", f"{field}.sockets[{s}]", host=host)
                    self._attach(host, sname, socket.gpus, socket.nics, node, f"{field}.sockets[{s}]")
                    for k, switch in enumerate(socket.switches):
                        self._add_switch(host, sname, switch, node, f"{field}.sockets[{s}].switches[{k}]")
                for a, b in combinations(sockets, 2):
                    assert node.socket_link is not None
                    self._add_link(a, b, kind="socket", **node.socket_link.model_dump())
                for d, domain in enumerate(node.nvlink):
                    self._add_nvlink(host, domain.gpus, domain.switched, domain.link.model_dump(),
                                     f"{field}.nvlink[{d}]", d)
                if "fabric" in self.graph:
                    assert topo.network is not None
                    for nic in self._nics.get(host, []):
                        self._add_link(nic, "fabric", kind="network", **topo.network.model_dump())

    def _add_nvlink(self, host: str, gpus: list[str], switched: bool, link: dict[str, float],
                    field: str, index: int) -> None:
        members = []
        for gpu in gpus:
            device = f"{host}/{gpu}"
            if self.graph.nodes.get(device, {}).get("kind") != "gpu":
                raise self._error(f"NVLink domain names {gpu!r}, which is not a GPU of this node", f"{field}.gpus")
            members.append(device)
        if switched:
            hub = f"{host}/nvswitch{index}"
            self._add_node(hub, "nvswitch", field, host=host)
            for device in members:
                self._add_link(device, hub, kind="nvlink", **link)
        else:
            for a, b in combinations(members, 2):
                self._add_link(a, b, kind="nvlink", **link)

    def _check_connected(self) -> None:
        if not self.devices:
            raise self._error("the topology has no devices", "nodes")
        pcie = self._pcie_view()
        reachable = nx.node_connected_component(pcie, self.devices[0])
        cut_off = [d for d in self.devices if d not in reachable]
        if cut_off:
            why = "several nodes need a network section and a NIC on each node" \
                if self.topology.host_count() > 1 else "every device must reach every other"
            raise self._error(f"the topology is disconnected: {', '.join(cut_off[:4])}"
                              f"{' …' if len(cut_off) > 4 else ''} cannot reach {self.devices[0]} ({why})",
                              "nodes")

    def _pcie_view(self) -> nx.Graph:
        """The graph without NVLink, where no device relays traffic for others."""
        def keep_edge(u: str, v: str) -> bool:
            return self.graph.edges[u, v]["kind"] != "nvlink"
        return nx.subgraph_view(self.graph, filter_edge=keep_edge)

    # -- queries ------------------------------------------------------------------------
    def has_nvlink(self, device: str) -> bool:
        """True when ``device`` has an NVLink (to a peer or an NVSwitch)."""
        return any(self.graph.edges[device, n]["kind"] == "nvlink" for n in self.graph.neighbors(device))

    def placement_class(self, devices: Iterable[str]) -> tuple[tuple[int, int, str], ...]:
        """``devices`` with their hosts renamed in order of first use: (host #, node entry, local name).

        Hosts stamped from one ``nodes`` entry are identical and the fabric treats every NIC
        alike, so two device lists of one class see routes with the same figures: a price
        that reads only routes holds for the whole class.
        """
        seen: dict[str, int] = {}
        out = []
        for device in devices:
            host = self.device_host[device]
            number = seen.setdefault(host, len(seen))
            out.append((number, self.host_node[host], device[len(host) + 1:]))
        return tuple(out)

    def gpu_of(self, device: str) -> str:
        return self.device_gpu[device]

    def hosts(self) -> list[str]:
        return list(dict.fromkeys(self.device_host[d] for d in self.devices))

    def route(self, src: str, dst: str) -> Route:
        """The route from ``src`` to ``dst`` (cached; NVLink preferred where both are on it)."""
        key = (src, dst)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = self._symmetric_route(src, dst) or self._compute_route(src, dst)
        return route

    def _symmetric_route(self, src: str, dst: str) -> Route | None:
        """The route between the same devices of the first hosts of their classes, hosts renamed back.

        Hosts stamped from one ``nodes`` entry are identical and the fabric meets every NIC
        alike, so the path between two hosts is the path between the first two of their
        classes with the names changed; this keeps a 1,000-GPU cluster from searching its
        whole graph for every pair (tests compare it with the direct search). None when the
        pair already is on the representative hosts, or a device is unknown.
        """
        if src not in self.device_host or dst not in self.device_host or src == dst:
            return None
        hs, hd = self.device_host[src], self.device_host[dst]
        reps = self._representatives()
        cs, cd = self.host_node[hs], self.host_node[hd]
        rs = reps[cs][0]
        if hs == hd:
            rd = rs
        elif cs == cd:
            if len(reps[cs]) < 2:
                return None
            rd = reps[cs][1]
        else:
            rd = reps[cd][0]
        if (rs, rd) == (hs, hd):
            return None
        base = self.route(rs + src[len(hs):], rd + dst[len(hd):])
        back = {rs: hs, rd: hd}

        def rename(node: str) -> str:
            host, sep, rest = node.partition("/")
            return back.get(host, host) + sep + rest if sep else node
        nodes = tuple(rename(n) for n in base.nodes)
        return Route(src, dst, nodes, tuple((rename(u), rename(v)) for u, v in base.links), base.route_class,
                     base.bottleneck_gb_s, base.latency_us)

    def _representatives(self) -> dict[int, list[str]]:
        """Node entry → its first two hosts."""
        reps = getattr(self, "_reps", None)
        if reps is None:
            reps = {}
            for host, cls in self.host_node.items():
                if len(reps.setdefault(cls, [])) < 2:
                    reps[cls].append(host)
            self._reps = reps
        return reps

    def _compute_route(self, src: str, dst: str) -> Route:
        for device in (src, dst):
            if device not in self.device_gpu:
                raise self._error(f"unknown device {device!r}", "placement")
        if src == dst:
            return Route(src, dst, (src,), (), "X", float("inf"), 0.0)
        path = self._nvlink_path(src, dst) or self._tree_path(src, dst)
        links = tuple(zip(path[:-1], path[1:]))
        edges = [self.graph.edges[u, v] for u, v in links]
        return Route(src, dst, tuple(path), links, self._classify(path, edges),
                     min(e["bandwidth_gb_s"] for e in edges), sum(e["latency_us"] for e in edges))

    def _nvlink_path(self, src: str, dst: str) -> list[str] | None:
        if self.graph.has_edge(src, dst) and self.graph.edges[src, dst]["kind"] == "nvlink":
            return [src, dst]
        for hub in self.graph.neighbors(src):
            if self.graph.nodes[hub]["kind"] == "nvswitch" and self.graph.has_edge(hub, dst):
                return [src, hub, dst]
        return None

    def _tree_path(self, src: str, dst: str) -> list[str]:
        view = self._pcie_view()
        relays = nx.subgraph_view(view, filter_node=lambda n: n in (src, dst)
                                  or self.graph.nodes[n]["kind"] != "gpu")
        return nx.shortest_path(relays, src, dst)

    def _classify(self, path: list[str], edges: list[dict]) -> str:
        kinds = [self.graph.nodes[n]["kind"] for n in path[1:-1]]
        link_kinds = {e["kind"] for e in edges}
        if "nvlink" in link_kinds:
            return "NVL"
        if "network" in link_kinds:
            return "NET"
        if "socket" in link_kinds:
            return "SYS"
        if "socket" in kinds:
            return "PHB"
        return "PXB" if kinds.count("switch") > 1 else "PIX"

    def route_matrix(self) -> list[list[str]]:
        return [[self.route(a, b).route_class for b in self.devices] for a in self.devices]

    def shared_links(self, pairs: Iterable[tuple[str, str]]) -> dict[LinkId, list[tuple[str, str]]]:
        """Directed links used by more than one of these routes, with the routes using them."""
        users: dict[LinkId, list[tuple[str, str]]] = {}
        for src, dst in pairs:
            for link in self.route(src, dst).links:
                users.setdefault(link, []).append((src, dst))
        return {link: routes for link, routes in users.items() if len(routes) > 1}

    def link(self, link: LinkId) -> dict:
        return self.graph.edges[link]

    @cached_property
    def route_class_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a, b in combinations(self.devices, 2):
            cls = self.route(a, b).route_class
            counts[cls] = counts.get(cls, 0) + 1
        return counts


def _switch_gpus(switch: Switch) -> int:
    return len(switch.gpus) + sum(_switch_gpus(child) for child in switch.switches)


def load_cluster(name_or_path: str) -> ClusterGraph:
    """Load a topology file or shipped name straight into its graph."""
    from profiles.loading import resolve_shipped, load_model_file
    from profiles.topology.format import TOPOLOGIES_DIR

    path = resolve_shipped(str(name_or_path), TOPOLOGIES_DIR, "topology")
    return ClusterGraph(load_model_file(Topology, path), file=str(path))
