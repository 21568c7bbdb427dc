"""Turn a saved ``nvidia-smi topo -m`` printout into a topology file.

``nvidia-smi topo -m`` prints a device × device matrix (GPUs and NICs) of the symbols
``X, NV#, PIX, PXB, PHB, NODE, SYS`` plus each GPU's CPU / NUMA affinity, then a legend.
That is enough to redraw the machine's shape as a :class:`~profiles.topology.format.Topology`:

- sockets: one per NUMA node (GPUs by their NUMA affinity; NICs join the GPUs they are
  not ``SYS`` to);
- ``PIX`` groups hang under one PCIe switch; groups joined by ``PXB`` become child switches
  of one parent switch; whatever is ``PHB`` or ``NODE`` apart meets at the socket's host
  bridge (the topology format has one host bridge per socket, so ``NODE`` reads as ``PHB``);
- ``NV#`` (a bond of # NVLinks): when every GPU pair is ``NV`` with one count, one switched
  domain (NVSwitch); otherwise one unswitched domain per linked pair.

The printout says nothing about speeds, so links get defaults by route class (PCIe by the
GPU's generation, NVLink # links × 20 GB/s as NCCL models it, docs/references.md §4) and the file's
``source`` says so. The result is checked against the input: the GPU × GPU route classes of
the built graph must equal the printed ones, or the matrix is not a PCIe tree and the
import fails naming the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import combinations, count
from pathlib import Path
from typing import Iterator

import yaml

from profiles.errors import InputError, PfplanError
from profiles.catalog.gpus import get_gpu
from profiles.topology.format import Link, Node, NvlinkDomain, Socket, Switch, Topology
from profiles.topology.graph import ClusterGraph

NVLINK_PER_LINK_GB_S = 20.0
"""NVLink bandwidth per link and direction as NCCL models it (docs/references.md §4)."""
PCIE_X16_GB_S = {"Gen3": 12.0, "Gen4": 22.0, "Gen5": 50.0}
"""Usable PCIe x16 bandwidth per direction by generation (docs/references.md §4)."""
SOCKET_LINK = Link(bandwidth_gb_s=20.0, latency_us=2.0)
PCIE_LATENCY_US = 1.0
NVLINK_LATENCY_US = 1.0

PCIE_CLASSES = ("PIX", "PXB", "PHB", "NODE", "SYS")
AFFINITY_COLUMNS = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GPU_LABEL = re.compile(r"GPU\d+")
_NV = re.compile(r"NV(\d+)")


@dataclass
class TopoMatrix:
    """What one ``nvidia-smi topo -m`` printout says, keyed by its column labels."""

    labels: list[str]
    cells: dict[tuple[str, str], str]
    numa: dict[str, int | None]
    line_of: dict[str, int]
    nic_names: dict[str, str] = field(default_factory=dict)

    def gpus(self) -> list[str]:
        return [label for label in self.labels if _GPU_LABEL.fullmatch(label)]

    def nics(self) -> list[str]:
        return [label for label in self.labels if not _GPU_LABEL.fullmatch(label)]


def _tokens(line: str) -> list[str]:
    for name in AFFINITY_COLUMNS:
        line = line.replace(name, name.replace(" ", "_"))
    return line.split()


def parse_topo_text(text: str, file: str | None = None) -> TopoMatrix:
    """Read the matrix, the affinity columns and the NIC legend; anything malformed is an error."""
    lines = [_ANSI.sub("", raw).rstrip() for raw in text.splitlines()]

    def error(message: str, lineno: int | None) -> InputError:
        return InputError(message, file=file, field=f"line {lineno}" if lineno else None)

    def is_cell(token: str) -> bool:
        return token == "X" or token in PCIE_CLASSES or bool(_NV.fullmatch(token))

    header_at = next((i for i, line in enumerate(lines)  # GPU0 first, and not a row (whose next token is a cell)
                      if (t := _tokens(line)) and _GPU_LABEL.fullmatch(t[0]) and not (len(t) > 1 and is_cell(t[1]))),
                     None)
    if header_at is None:
        raise error("not an nvidia-smi topo -m printout: no header line of GPU0 GPU1 ... columns", None)
    header = _tokens(lines[header_at])
    extras = [t.replace("_", " ") for t in header if t.replace("_", " ") in AFFINITY_COLUMNS]
    labels = [t for t in header if t.replace("_", " ") not in AFFINITY_COLUMNS]
    if len(set(labels)) != len(labels):
        raise error("a column label repeats in the header", header_at + 1)
    n = len(labels)
    cells: dict[tuple[str, str], str] = {}
    numa: dict[str, int | None] = {}
    line_of: dict[str, int] = {}
    i = header_at + 1
    while i < len(lines) and lines[i].strip():
        lineno = i + 1
        row = _tokens(lines[i])
        label = row[0]
        if label not in labels:
            raise error(f"row {label!r} is not one of the header's columns ({' '.join(labels)})", lineno)
        if label in line_of:
            raise error(f"row {label} appears twice", lineno)
        values = row[1:]
        if len(values) < n:
            raise error(f"row {label} has {len(values)} cells, expected {n} (one per column)", lineno)
        for col, value in zip(labels, values[:n]):
            if (col == label) != (value == "X") or not (value == "X" or value in PCIE_CLASSES or _NV.fullmatch(value)):
                expected = "X on the diagonal" if col == label else "one of NV#, PIX, PXB, PHB, NODE, SYS"
                raise error(f"row {label}, column {col}: {value!r}, expected {expected}", lineno)
            if _NV.fullmatch(value) and not (_GPU_LABEL.fullmatch(label) and _GPU_LABEL.fullmatch(col)):
                raise error(f"row {label}, column {col}: {value} joins a NIC; NVLink joins GPUs only", lineno)
            cells[(label, col)] = value
        affinity = dict(zip(extras, values[n:]))
        numa_value = affinity.get("NUMA Affinity", "N/A")
        if numa_value != "N/A" and not numa_value.isdigit():
            raise error(f"row {label}: NUMA Affinity {numa_value!r}, expected a number or N/A", lineno)
        numa[label] = int(numa_value) if numa_value.isdigit() else None
        line_of[label] = lineno
        i += 1
    missing = [label for label in labels if label not in line_of]
    if missing:
        raise error(f"no row for {', '.join(missing)} (the matrix must be square)", i + 1)
    for a, b in combinations(labels, 2):
        if cells[(a, b)] != cells[(b, a)]:
            raise error(f"{a}-{b} is {cells[(a, b)]} but {b}-{a} is {cells[(b, a)]}; the matrix must be "
                        "symmetric", max(line_of[a], line_of[b]))
    nic_names = {}
    for line in lines[i:]:
        match = re.fullmatch(r"\s*(NIC\d+):\s*(\S+)\s*", line)
        if match:
            nic_names[match.group(1)] = match.group(2)
    matrix = TopoMatrix(labels, cells, numa, line_of, nic_names)
    if not matrix.gpus():
        raise error("the matrix has no GPU rows", header_at + 1)
    return matrix


class _UnionFind:
    def __init__(self, items: list[str]) -> None:
        self.parent = {item: item for item in items}

    def find(self, item: str) -> str:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(b)] = self.find(a)

    def groups(self, items: list[str]) -> list[list[str]]:
        """Groups in the order their first member appears in ``items``."""
        out: dict[str, list[str]] = {}
        for item in items:
            out.setdefault(self.find(item), []).append(item)
        return list(out.values())


def _device_name(label: str) -> str:
    """The topology's name for a printout column: ``GPU3`` → ``gpu3``, ``mlx5_0`` stays."""
    return label.lower()


def _sockets(matrix: TopoMatrix, file: str | None) -> list[tuple[str, list[str]]]:
    """(socket name, its devices): one socket per NUMA node.

    Devices a PCIe class other than SYS joins share a socket, and so do GPUs reporting the
    same NUMA node. Groups that only NV# joins (NVLink hides the PCIe class) stay apart
    when they report different NUMA nodes or some pair between them is SYS; otherwise
    they are taken to share a socket.
    """
    labels, cells = matrix.labels, matrix.cells
    uf = _UnionFind(labels)
    for a, b in combinations(labels, 2):
        if cells[(a, b)] in ("PIX", "PXB", "PHB", "NODE"):
            uf.union(a, b)
    for a, b in combinations(matrix.gpus(), 2):
        if matrix.numa[a] is not None and matrix.numa[a] == matrix.numa[b]:
            uf.union(a, b)
    numa_of: list[set[int]] = []
    groups: list[list[str]] = []
    for members in uf.groups(labels):
        for a, b in combinations(members, 2):
            if cells[(a, b)] == "SYS":
                why = f"both on NUMA node {matrix.numa[a]}" if matrix.numa.get(a) is not None \
                    and matrix.numa[a] == matrix.numa.get(b) else "joined by PCIe through other devices"
                raise InputError(f"{a}-{b} is SYS but they are {why}; SYS must cross NUMA nodes",
                                 file=file, field=f"line {max(matrix.line_of[a], matrix.line_of[b])}")
        nodes = {matrix.numa[m] for m in members if matrix.numa.get(m) is not None}
        if len(nodes) > 1:
            raise InputError(f"{', '.join(members)} are joined by PCIe but report NUMA nodes "
                             f"{sorted(nodes)}", file=file, field=f"line {matrix.line_of[members[0]]}")
        for k, other in enumerate(groups):
            if not (nodes and numa_of[k] and nodes != numa_of[k]) \
                    and all(cells[(a, b)] != "SYS" for a in members for b in other):
                other.extend(members)
                numa_of[k] |= nodes
                break
        else:
            groups.append(list(members))
            numa_of.append(nodes)
    order = {label: i for i, label in enumerate(labels)}
    return [(f"numa{min(nodes)}" if nodes else f"socket{k}", sorted(members, key=order.__getitem__))
            for k, (members, nodes) in enumerate(zip(groups, numa_of))]


def _pcie_tree(matrix: TopoMatrix, name: str, members: list[str], link: Link, switch_names: Iterator[str]) -> Socket:
    """One socket's PCIe tree: PIX groups on a switch, PXB-joined groups under a parent switch."""
    cells = matrix.cells
    pix, pxb = _UnionFind(members), _UnionFind(members)
    for a, b in combinations(members, 2):
        if cells[(a, b)] == "PIX":
            pix.union(a, b)
            pxb.union(a, b)
        elif cells[(a, b)] == "PXB":
            pxb.union(a, b)

    def split(devices: list[str]) -> tuple[list[str], list[str]]:
        names = [_device_name(d) for d in devices]
        return ([n for d, n in zip(devices, names) if _GPU_LABEL.fullmatch(d)],
                [n for d, n in zip(devices, names) if not _GPU_LABEL.fullmatch(d)])

    socket = Socket(name=name)
    for cluster in pxb.groups(members):
        groups = pix.groups(cluster)
        if len(groups) == 1 and len(groups[0]) == 1:
            gpus, nics = split(groups[0])
            socket.gpus.extend(gpus)
            socket.nics.extend(nics)
        elif len(groups) == 1:
            gpus, nics = split(groups[0])
            socket.switches.append(Switch(name=next(switch_names), uplink=link, gpus=gpus, nics=nics))
        else:
            parent = Switch(name=next(switch_names), uplink=link)
            for group in groups:
                gpus, nics = split(group)
                parent.switches.append(Switch(name=next(switch_names), uplink=link, gpus=gpus, nics=nics))
            socket.switches.append(parent)
    return socket


def _nvlink(matrix: TopoMatrix) -> list[NvlinkDomain]:
    gpus = matrix.gpus()
    counts = {(a, b): int(m.group(1)) for a, b in combinations(gpus, 2)
              if (m := _NV.fullmatch(matrix.cells[(a, b)]))}
    link = lambda n: Link(bandwidth_gb_s=n * NVLINK_PER_LINK_GB_S, latency_us=NVLINK_LATENCY_US)  # noqa: E731
    names = {g: _device_name(g) for g in gpus}
    if len(gpus) > 1 and len(counts) == len(gpus) * (len(gpus) - 1) // 2 and len(set(counts.values())) == 1:
        return [NvlinkDomain(gpus=[names[g] for g in gpus], switched=True, link=link(next(iter(counts.values()))))]
    return [NvlinkDomain(gpus=[names[a], names[b]], switched=False, link=link(n)) for (a, b), n in counts.items()]


def pcie_link_for(gpu: str) -> Link:
    """The default PCIe x16 link of a GPU kind, by the generation its catalog entry names."""
    interconnect = get_gpu(gpu).interconnect
    gen = next((g for g in PCIE_X16_GB_S if g in interconnect), "Gen4")
    return Link(bandwidth_gb_s=PCIE_X16_GB_S[gen], latency_us=PCIE_LATENCY_US)


def topology_from_matrix(matrix: TopoMatrix, *, gpu: str, name: str, file: str | None = None) -> Topology:
    """Build the topology and check its route classes reproduce the printout."""
    pcie = pcie_link_for(gpu)
    switch_names = (f"sw{i}" for i in count())
    sockets = [_pcie_tree(matrix, socket_name, members, pcie, switch_names)
               for socket_name, members in _sockets(matrix, file)]
    nvlink = _nvlink(matrix)
    gen = next((g for g, bw in PCIE_X16_GB_S.items() if bw == pcie.bandwidth_gb_s), "")
    source = (f"imported from {file or 'an nvidia-smi topo -m printout'}; link figures are defaults by route "
              f"class, edit or run pfplan profile links: PCIe {gen} x16 {pcie.bandwidth_gb_s:g} GB/s and "
              f"{PCIE_LATENCY_US:g} µs per hop, inter-socket {SOCKET_LINK.bandwidth_gb_s:g} GB/s and "
              f"{SOCKET_LINK.latency_us:g} µs, NVLink {NVLINK_PER_LINK_GB_S:g} GB/s per link (NV# × "
              f"{NVLINK_PER_LINK_GB_S:g}) and {NVLINK_LATENCY_US:g} µs (docs/references.md §4); all-pairs NV# is "
              "read as an NVSwitch (switched: true).")
    described = ", ".join(f"{label}={matrix.nic_names[label]}" for label in matrix.nics() if label in matrix.nic_names)
    node = Node(name="node0", gpu=gpu, sockets=sockets, device_link=pcie,
                socket_link=SOCKET_LINK if len(sockets) > 1 else None, nvlink=nvlink)
    topology = Topology(name=name, description=f"{len(matrix.gpus())} × {gpu} from nvidia-smi topo -m"
                        + (f" (NICs: {described})" if described else ""), source=source, nodes=[node])
    _check_round_trip(matrix, topology, file)
    return topology


def _nics_as_devices(topology: Topology) -> Topology:
    """A copy in which NICs count as devices, so routes to and between them can be checked too."""
    def switch(sw: Switch) -> Switch:
        return sw.model_copy(update={"gpus": sw.gpus + sw.nics, "nics": [],
                                     "switches": [switch(child) for child in sw.switches]})

    node = topology.nodes[0]
    sockets = [s.model_copy(update={"gpus": s.gpus + s.nics, "nics": [],
                                    "switches": [switch(sw) for sw in s.switches]}) for s in node.sockets]
    return topology.model_copy(update={"nodes": [node.model_copy(update={"sockets": sockets})]})


def _check_round_trip(matrix: TopoMatrix, topology: Topology, file: str | None) -> None:
    """Every printed pair, GPUs and NICs, gets its printed class back from the built graph."""
    try:
        cluster = ClusterGraph(_nics_as_devices(topology), file=file)
    except PfplanError as exc:
        raise InputError(f"the printout does not describe a connected machine: {exc.message}", file=file) from None
    for a, b in combinations(matrix.labels, 2):
        expected = expected_route_class(matrix.cells[(a, b)])
        got = cluster.route(f"node0/{_device_name(a)}", f"node0/{_device_name(b)}").route_class
        if got != expected:
            raise InputError(f"{a}-{b} is {matrix.cells[(a, b)]}, but the other entries put them {got} apart; "
                             "the matrix does not describe one PCIe tree", file=file,
                             field=f"line {max(matrix.line_of[a], matrix.line_of[b])}")


def expected_route_class(cell: str) -> str:
    """The route class a printout symbol becomes in a topology (NV# → NVL, NODE → PHB)."""
    if _NV.fullmatch(cell):
        return "NVL"
    return "PHB" if cell == "NODE" else cell


def import_topo_file(path: Path | str, *, gpu: str, name: str | None = None) -> Topology:
    """Read ``nvidia-smi topo -m`` output saved in ``path`` into a topology."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read file ({exc})", file=str(path)) from None
    try:
        get_gpu(gpu)
    except InputError as exc:
        raise InputError(exc.message, field="--gpu") from None
    return topology_from_matrix(parse_topo_text(text, file=str(path)), gpu=gpu, name=name or path.stem,
                                file=str(path))


class _TopologyDumper(yaml.SafeDumper):
    """Short YAML: mappings and lists of plain values on one line, like the shipped files."""


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flat = all(not isinstance(v, (dict, list)) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flat)


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flat = all(not isinstance(v, (dict, list)) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_TopologyDumper.add_representer(dict, _represent_dict)
_TopologyDumper.add_representer(list, _represent_list)


def topology_yaml(topology: Topology) -> str:
    """The topology as an editable YAML file (defaults left out, ``schema_version`` first)."""
    data = {"schema_version": topology.schema_version,
            **topology.model_dump(mode="json", exclude_defaults=True)}
    return yaml.dump(data, Dumper=_TopologyDumper, sort_keys=False, allow_unicode=True, width=100)
