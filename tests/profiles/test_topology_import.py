"""Importing ``nvidia-smi topo -m`` printouts: the route classes survive the round trip."""

from __future__ import annotations

import re
from itertools import count
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from profiles.errors import InputError
from profiles.topology.format import Topology, load_topology, shipped_topologies
from profiles.topology.graph import ClusterGraph, load_cluster
from profiles.topology.smi_import import import_topo_file, parse_topo_text, topology_from_matrix

SAMPLES = Path(__file__).parent / "topo_samples"
SAMPLE_GPUS = {"dgx-a100": "a100-sxm", "pcie8-box": "l40", "a100-pcie-bridged": "a100-pcie"}


def printed_gpu_classes(text: str) -> list[list[str]]:
    """The GPU × GPU block of a printout, read naively, NV# → NVL and NODE → PHB."""
    rows = [line.split() for line in text.splitlines() if re.match(r"GPU\d+\s", line)]
    n = len(rows)
    rename = lambda c: "NVL" if c.startswith("NV") else "PHB" if c == "NODE" else c  # noqa: E731
    return [[rename(c) for c in row[1:n + 1]] for row in rows]


@pytest.mark.parametrize("sample", sorted(SAMPLE_GPUS))
def test_import_reproduces_the_printed_route_classes(sample):
    path = SAMPLES / f"{sample}.txt"
    topology = import_topo_file(path, gpu=SAMPLE_GPUS[sample])
    cluster = ClusterGraph(topology)
    assert cluster.devices == [f"node0/gpu{i}" for i in range(len(cluster.devices))]
    assert cluster.route_matrix() == printed_gpu_classes(path.read_text())
    assert "defaults by route class, edit or run pfplan profile links" in topology.source


def test_dgx_nv12_is_one_switched_domain_and_numa_nodes_are_sockets():
    topology = import_topo_file(SAMPLES / "dgx-a100.txt", gpu="a100-sxm")
    node = topology.nodes[0]
    assert [s.name for s in node.sockets] == ["numa3", "numa1", "numa7", "numa5"]
    (domain,) = node.nvlink
    assert domain.switched and len(domain.gpus) == 8
    assert domain.link.bandwidth_gb_s == pytest.approx(12 * 20.0)
    # GPU0, GPU1 and their two NICs are PXB apart: one parent switch, a child switch each.
    (parent,) = node.sockets[0].switches
    assert [(c.gpus, c.nics) for c in parent.switches] == [(["gpu0"], []), (["gpu1"], []), ([], ["mlx5_0"]),
                                                          ([], ["mlx5_1"])]
    assert node.socket_link is not None


def test_nvlink_bridges_become_unswitched_pair_domains():
    topology = import_topo_file(SAMPLES / "a100-pcie-bridged.txt", gpu="a100-pcie")
    node = topology.nodes[0]
    assert [(d.gpus, d.switched, d.link.bandwidth_gb_s) for d in node.nvlink] == [
        (["gpu0", "gpu1"], False, 240.0), (["gpu2", "gpu3"], False, 240.0)]
    # NIC0 is PIX to GPU0 and GPU1: all three on one switch of socket numa0.
    assert [(s.gpus, s.nics) for s in node.sockets[0].switches] == [(["gpu0", "gpu1"], ["nic0"])]
    assert "NIC0=mlx5_0" in topology.description


def test_pix_pairs_share_their_switch_uplink():
    cluster = ClusterGraph(import_topo_file(SAMPLES / "pcie8-box.txt", gpu="l40"))
    shared = cluster.shared_links([("node0/gpu0", "node0/gpu2"), ("node0/gpu1", "node0/gpu3")])
    # GPU0/1 sit on child switch sw1 and GPU2/3 on sw2, both under parent sw0.
    assert sorted(shared) == [("node0/sw0", "node0/sw2"), ("node0/sw1", "node0/sw0")]
    assert all(len(routes) == 2 for routes in shared.values())


def test_pcie_generation_follows_the_gpu_kind():
    t4 = import_topo_file(SAMPLES / "pcie8-box.txt", gpu="t4").nodes[0]
    assert t4.device_link.bandwidth_gb_s == 12.0
    l40 = import_topo_file(SAMPLES / "pcie8-box.txt", gpu="l40").nodes[0]
    assert l40.device_link.bandwidth_gb_s == 22.0


def test_spaces_instead_of_tabs_ansi_codes_and_a_prompt_line_are_accepted():
    text = (SAMPLES / "pcie8-box.txt").read_text().replace("\t", "   ")
    text = "$ nvidia-smi topo -m\n\x1b[4m" + text.replace("\n", "\x1b[0m\n", 1)
    matrix = parse_topo_text(text)
    assert matrix.gpus() == [f"GPU{i}" for i in range(8)]
    assert matrix.numa["GPU5"] == 1


def test_single_socket_without_numa_affinity():
    text = "\tGPU0\tGPU1\tGPU2\tCPU Affinity\tNUMA Affinity\n" \
           "GPU0\t X \tPHB\tPHB\t0-7\tN/A\nGPU1\tPHB\t X \tPHB\t0-7\tN/A\nGPU2\tPHB\tPHB\t X \t0-7\tN/A\n"
    topology = topology_from_matrix(parse_topo_text(text), gpu="t4", name="t4x3")
    cluster = ClusterGraph(topology)
    assert cluster.route_matrix() == [["X", "PHB", "PHB"], ["PHB", "X", "PHB"], ["PHB", "PHB", "X"]]
    assert len(topology.nodes[0].sockets) == 1 and topology.nodes[0].socket_link is None


def test_without_numa_affinity_nics_tell_the_sockets_apart():
    text = (SAMPLES / "dgx-a100.txt").read_text()
    text = re.sub(r"\t[0-9,-]+\t\d+$", "", text, flags=re.M).replace("\tCPU Affinity\tNUMA Affinity", "")
    matrix = parse_topo_text(text)
    assert set(matrix.numa.values()) == {None}
    topology = topology_from_matrix(matrix, gpu="a100-sxm", name="dgx")
    sockets = topology.nodes[0].sockets
    assert [s.name for s in sockets] == ["socket0", "socket1", "socket2", "socket3"]
    assert ClusterGraph(topology).route_matrix() == printed_gpu_classes(text)


def test_gpus_only_nvlink_joins_share_one_socket():
    text = "\tGPU0\tGPU1\tGPU2\tGPU3\n" + "".join(
        f"GPU{i}\t" + "\t".join(" X " if i == j else "NV18" for j in range(4)) + "\n" for i in range(4))
    topology = topology_from_matrix(parse_topo_text(text), gpu="h100-sxm", name="hgx4")
    (socket,) = topology.nodes[0].sockets
    assert socket.gpus == ["gpu0", "gpu1", "gpu2", "gpu3"]
    assert topology.nodes[0].nvlink[0].link.bandwidth_gb_s == 18 * 20.0


def render_topo_text(cluster: ClusterGraph) -> str:
    """A shipped topology printed the way nvidia-smi would (NVL as NV12, no NICs)."""
    labels = [f"GPU{i}" for i in range(len(cluster.devices))]
    pcie = nx.subgraph_view(cluster.graph, filter_edge=lambda u, v: cluster.graph.edges[u, v]["kind"] != "nvlink")
    sockets_all = [n for n, kind in cluster.graph.nodes(data="kind") if kind == "socket"]
    socket_of = {d: min(sockets_all, key=lambda s: nx.shortest_path_length(pcie, d, s)) for d in cluster.devices}
    sockets = list(dict.fromkeys(socket_of.values()))
    lines = ["\t" + "\t".join(labels) + "\tCPU Affinity\tNUMA Affinity"]
    for label, a, row in zip(labels, cluster.devices, cluster.route_matrix()):
        cells = [" X " if c == "X" else "NV12" if c == "NVL" else c for c in row]
        lines.append("\t".join([label, *cells, "0-15", str(sockets.index(socket_of[a]))]))
    return "\n".join(lines) + "\n"


def pcie_only_single_node() -> list[str]:
    """Shipped GPU topologies nvidia-smi prints in full (NVLink would hide the PCIe classes)."""
    return [n for n in shipped_topologies() if load_topology(n).host_count() == 1 and n != "cpu2"
            and "NVL" not in load_cluster(n).route_class_counts]


@pytest.mark.parametrize("name", pcie_only_single_node())
def test_shipped_topologies_survive_print_and_import(name):
    cluster = load_cluster(name)
    text = render_topo_text(cluster)
    imported = ClusterGraph(topology_from_matrix(parse_topo_text(text), gpu=cluster.gpu_of(cluster.devices[0]),
                                                 name=name))
    assert imported.route_matrix() == cluster.route_matrix()


BAD = {
    "no header": ("GPU0 X\n", "no header line"),
    "unknown symbol": ("\tGPU0\tGPU1\nGPU0\t X \tPCI\nGPU1\tPCI\t X \n", "line 2: row GPU0, column GPU1: 'PCI'"),
    "diagonal not X": ("\tGPU0\tGPU1\nGPU0\tPIX\tPIX\nGPU1\tPIX\t X \n", "line 2: row GPU0, column GPU0"),
    "short row": ("\tGPU0\tGPU1\nGPU0\t X \nGPU1\tPIX\t X \n", "line 2: row GPU0 has 1 cells, expected 2"),
    "missing row": ("\tGPU0\tGPU1\nGPU0\t X \tPIX\n", "no row for GPU1"),
    "unknown row": ("\tGPU0\tGPU1\nGPU0\t X \tPIX\nGPU7\tPIX\t X \n", "line 3: row 'GPU7'"),
    "asymmetric": ("\tGPU0\tGPU1\nGPU0\t X \tPIX\nGPU1\tPXB\t X \n", "line 3: GPU0-GPU1 is PIX but GPU1-GPU0 is PXB"),
    "bad numa": ("\tGPU0\tGPU1\tNUMA Affinity\nGPU0\t X \tPIX\tzero\nGPU1\tPIX\t X \t0\n", "NUMA Affinity 'zero'"),
    "SYS inside a NUMA node": ("\tGPU0\tGPU1\tNUMA Affinity\nGPU0\t X \tSYS\t0\nGPU1\tSYS\t X \t0\n",
                               "GPU0-GPU1 is SYS but they are both on NUMA node 0"),
    "PCIe across NUMA nodes": ("\tGPU0\tGPU1\tNUMA Affinity\nGPU0\t X \tPIX\t0\nGPU1\tPIX\t X \t1\n",
                               "joined by PCIe but report NUMA nodes [0, 1]"),
    "NVLink to a NIC": ("\tGPU0\tNIC0\nGPU0\t X \tNV4\nNIC0\tNV4\t X \n", "line 2: row GPU0, column NIC0: NV4 joins a NIC"),
    "NIC not in the tree": ("\tGPU0\tGPU1\tNIC0\nGPU0\t X \tPIX\tPIX\nGPU1\tPIX\t X \tPXB\nNIC0\tPIX\tPXB\t X \n",
                            "line 4: GPU1-NIC0 is PXB, but the other entries put them PIX apart"),
    "not a tree": ("\tGPU0\tGPU1\tGPU2\nGPU0\t X \tPIX\tPXB\nGPU1\tPIX\t X \tPIX\nGPU2\tPXB\tPIX\t X \n",
                   "line 4: GPU0-GPU2 is PXB, but the other entries put them PIX apart"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_printouts_are_one_line_naming_file_and_line(case, tmp_path):
    text, needle = BAD[case]
    path = tmp_path / "topo.txt"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        import_topo_file(path, gpu="l40")
    line = info.value.one_line()
    assert line.startswith(f"{path}: ") and needle in line and "\n" not in line


def test_topology_import_command_writes_a_loadable_file(pfplan, tmp_path):
    out = tmp_path / "mine.yaml"
    result = pfplan("topology", "import", SAMPLES / "pcie8-box.txt", "-o", out, "--gpu", "l40")
    assert result.code == 0, result.err
    assert "PIX 4, PXB 4, PHB 4, SYS 16" in result.out
    assert out.read_text().startswith("schema_version: 1\nname: mine\n")
    cluster = load_cluster(str(out))
    assert cluster.route("node0/gpu4", "node0/gpu6").route_class == "PHB"
    shown = pfplan("topology", "show", out)
    assert shown.code == 0 and "node0/gpu7 (l40)" in shown.out


@st.composite
def pcie_trees(draw) -> Topology:
    """A random single-node PCIe machine: 1-2 sockets, switches nested up to two deep."""
    gpu_ids = count()

    def gpus(low: int, high: int) -> list[str]:
        return [f"gpu{next(gpu_ids)}" for _ in range(draw(st.integers(low, high)))]

    switch_ids = count()
    link = {"bandwidth_gb_s": 22, "latency_us": 1.0}
    sockets = []
    for s in range(draw(st.integers(1, 2))):
        switches = []
        for _ in range(draw(st.integers(0, 2))):
            children = [{"name": f"sw{next(switch_ids)}", "uplink": link, "gpus": gpus(1, 3)}
                        for _ in range(draw(st.integers(0, 2)))]
            switches.append({"name": f"sw{next(switch_ids)}", "uplink": link, "gpus": gpus(0 if children else 1, 2),
                             "switches": children})
        sockets.append({"name": f"cpu{s}", "gpus": gpus(0, 2), "switches": switches})
    total = next(gpu_ids)
    assume(total >= 2 and all(s["gpus"] or s["switches"] for s in sockets))
    return Topology.model_validate({"name": "random", "nodes": [{
        "name": "node0", "gpu": "l40", "sockets": sockets, "device_link": link,
        "socket_link": {"bandwidth_gb_s": 20, "latency_us": 2.0} if len(sockets) > 1 else None}]})


@settings(max_examples=40, deadline=None)
@given(pcie_trees())
def test_any_pcie_tree_survives_print_and_import(topology):
    cluster = ClusterGraph(topology)
    imported = ClusterGraph(topology_from_matrix(parse_topo_text(render_topo_text(cluster)), gpu="l40",
                                                 name="random"))
    assert imported.route_matrix() == cluster.route_matrix()
