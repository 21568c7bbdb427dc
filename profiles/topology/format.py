"""The cluster topology file format (YAML).

A topology says how devices hang together, the way ``nvidia-smi topo -m`` and NCCL see it:
nodes → sockets (NUMA) → PCIe switches (possibly nested) → GPUs and NICs, plus NVLink
domains and the links between sockets and between nodes. Every link carries a bandwidth
in GB/s *per direction* and a latency in µs. Route classes (NVL, PIX, PXB, PHB, SYS, NET)
are derived from the shape by :mod:`profiles.topology.graph`, never typed by hand.

Device ids are ``<node>/<gpu>``, e.g. ``node0/gpu3``; a plan's placement uses them.
"""

from __future__ import annotations

import re

from pathlib import Path
from typing import Literal

from profiles.formats import FormatModel
from pydantic import ConfigDict, Field, field_validator, model_validator

from profiles.loading import load_model_file, resolve_shipped

TOPOLOGIES_DIR = Path(__file__).parents[1] / "data" / "topologies"


class Link(FormatModel):
    """A link's speed: both directions run at this bandwidth independently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bandwidth_gb_s: float = Field(gt=0, description="GB/s (10^9 bytes per second), per direction.")
    latency_us: float = Field(ge=0, description="One-way latency of the link, µs.")


class Switch(FormatModel):
    """A PCIe switch: its uplink to the parent (socket or switch) and what hangs below it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    uplink: Link = Field(description="Link from this switch to its parent; shared by everything below.")
    gpus: list[str] = Field(default_factory=list)
    nics: list[str] = Field(default_factory=list)
    switches: list[Switch] = Field(default_factory=list, description="Nested switches (routes through them are PXB).")


class Socket(FormatModel):
    """A CPU socket / NUMA node with its PCIe root complex (the host bridge)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    gpus: list[str] = Field(default_factory=list, description="Devices on the root complex directly.")
    nics: list[str] = Field(default_factory=list)
    switches: list[Switch] = Field(default_factory=list)


class NvlinkDomain(FormatModel):
    """GPUs joined by NVLink: through an NVSwitch, or pairwise (bridges / a direct mesh)."""

    model_config = ConfigDict(extra="forbid")

    gpus: list[str] = Field(min_length=2)
    switched: bool = Field(True, description="True: every GPU has one link to an NVSwitch. False: a direct link per pair.")
    link: Link = Field(description="Each GPU's NVLink bandwidth (to the switch, or to each peer).")

    @field_validator("gpus")
    @classmethod
    def _no_self_loop(cls, gpus: list[str]) -> list[str]:
        repeated = sorted({g for g in gpus if gpus.count(g) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)} listed twice (an NVLink from a GPU to itself)")
        return gpus


class Node(FormatModel):
    """One machine; ``count`` > 1 stamps out identical machines named ``<name><i>``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    count: int = Field(1, ge=1, le=65_536)
    gpu: str = Field(description="GPU kind from the catalog (pfplan gpus), or 'cpu'.")
    sockets: list[Socket] = Field(min_length=1)
    device_link: Link = Field(description="Each GPU's and NIC's own PCIe link to its switch or socket.")
    socket_link: Link | None = Field(None, description="Between every two sockets (UPI/QPI); needed with >1 socket.")
    nvlink: list[NvlinkDomain] = Field(default_factory=list)

    def host_names(self) -> list[str]:
        return [self.name] if self.count == 1 else [f"{self.name}{i}" for i in range(self.count)]


class Communication(FormatModel):
    """How far the software's transfers fall short of the links (NCCL over PCIe, eager PyTorch).

    Link figures say what the wires carry; collectives on a real box reach less, and an
    "asynchronous" collective beside busy compute kernels may barely overlap (NCCL's copy
    kernels wait for SMs and share memory bandwidth with compute). Both are properties of a
    box and its software stack, so they are calibrated from measured runs
    (``pfplan topology calibrate``) and default to the ideal, 1.
    """

    model_config = ConfigDict(extra="forbid")

    bandwidth_efficiency: float = Field(
        1.0, gt=0, le=1, description="Achieved / link bandwidth for every transfer whose route class has no measured fit.")
    overlap_efficiency: float = Field(
        1.0, ge=0, le=1, description="Share of an overlapped transfer's time that runs beside compute; "
                                     "the rest serialises with it (as a blocking transfer).")
    source: str = Field("", description="Where the figures come from (the calibration command, its measurements).")
    bandwidth_by_route_class: dict[Literal["NVL", "PIX", "PXB", "PHB", "SYS", "NET"], float] = Field(
        default_factory=dict, description="Achieved / link bandwidth per route class; a class not listed uses "
                                          "bandwidth_efficiency.")
    prior: bool = Field(False, description="True: the figures are priors from public NCCL measurements "
                                           "(profiles/topology/priors.py), not calibrated on this box.")

    @model_validator(mode="after")
    def _fractions(self) -> Communication:
        bad = {k: v for k, v in self.bandwidth_by_route_class.items() if not 0 < v <= 1}
        if bad:
            raise ValueError(f"bandwidth_by_route_class values must be in (0, 1]: {bad}")
        return self

    def describe(self, *, brief: bool = False) -> str:
        """One line on what the simulator assumes about this box's transfers; ``brief`` (for
        the footers of search and simulate) keeps the source's first clause, ≤ 100 characters."""
        if not self.source and self.bandwidth_efficiency == 1 and self.overlap_efficiency == 1 \
                and not self.bandwidth_by_route_class:
            return "communication: ideal (full link bandwidth, perfect overlap; not calibrated)"
        if self.prior:
            per = ", ".join(f"{k} {v:g}" for k, v in self.bandwidth_by_route_class.items())
            head = (f"communication PRIORS (not calibrated on this box): transfers at {per or self.bandwidth_efficiency}"
                    f" × link bandwidth, overlapped transfers hide {self.overlap_efficiency:g} of their time")
            return head + ("; `pfplan topology show` for the sources" if brief else f" ({self.source})")
        source = " ".join((self.source or "no source given").split())
        if brief:
            first = re.split(r"[:.;]\s", source, maxsplit=1)[0]
            source = (first if len(first) <= 100 else first[:99] + "…") + "; `pfplan topology show` for the rest"
        return (f"communication: transfers at {self.bandwidth_efficiency:g} × link bandwidth, overlapped transfers "
                f"hide {self.overlap_efficiency:g} of their time ({source})")


class Topology(FormatModel):
    """A whole cluster."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    name: str
    description: str = ""
    source: str = Field("", description="Where the link figures come from (data sheet, measurement + command).")
    nodes: list[Node] = Field(min_length=1)
    network: Link | None = Field(None, description="Each NIC's link into the inter-node fabric; needed with >1 node.")
    communication: Communication = Field(default_factory=Communication,
                                         description="Achieved bandwidth and overlap of the software's transfers.")

    @model_validator(mode="after")
    def _names_unique(self) -> Topology:
        hosts = [h for node in self.nodes for h in node.host_names()]
        seen: set[str] = set()
        dupes = sorted({h for h in hosts if h in seen or seen.add(h)})  # linear: 65,536 hosts in a blink
        if dupes:
            raise ValueError(f"node names repeat: {', '.join(dupes)}")
        return self

    def host_count(self) -> int:
        return sum(node.count for node in self.nodes)


def load_topology(name_or_path: str | Path) -> Topology:
    """A topology from a file or a shipped name (``pcie8`` or ``pcie8.yaml``)."""
    path = resolve_shipped(str(name_or_path), TOPOLOGIES_DIR, "topology")
    return load_model_file(Topology, path)


def shipped_topologies() -> list[str]:
    return sorted(p.stem for p in TOPOLOGIES_DIR.glob("*.yaml"))
