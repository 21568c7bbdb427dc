"""Test doubles: a constant cost model and small star topologies with round numbers."""

from __future__ import annotations

from dataclasses import dataclass

from profiles.costs.cost_model import EMBED, FINAL, LayerShape
from profiles.topology.format import Communication, Topology
from profiles.topology.graph import ClusterGraph


@dataclass
class ConstantCost:
    """Every block takes ``block_s`` whatever its shape; embed and final take their own constants."""

    block_s: float = 1.0
    embed_s: float = 0.0
    final_s: float = 0.0

    @property
    def name(self) -> str:
        return "constant"

    def layer_time_s(self, shape: LayerShape) -> float:
        return {EMBED: self.embed_s, FINAL: self.final_s}.get(shape.kind, self.block_s)


@dataclass
class ScaledCost:
    """Another cost model's times times ``factor``."""

    inner: object
    factor: float

    @property
    def name(self) -> str:
        return f"scaled:{self.inner.name}"

    def layer_time_s(self, shape: LayerShape) -> float:
        return self.factor * self.inner.layer_time_s(shape)


def star_cluster(n: int, *, bandwidth_gb_s: float = 1.0, latency_us: float = 0.0, gpu: str = "a100-pcie") -> ClusterGraph:
    """``n`` GPUs each on its own link to one socket: gpuI → gpuJ uses (gpuI, cpu0) and (cpu0, gpuJ)."""
    topo = Topology.model_validate({
        "schema_version": 1, "name": f"star{n}",
        "nodes": [{"name": "node0", "gpu": gpu,
                   "device_link": {"bandwidth_gb_s": bandwidth_gb_s, "latency_us": latency_us},
                   "sockets": [{"name": "cpu0", "gpus": [f"gpu{i}" for i in range(n)]}]}]})
    return ClusterGraph(topo)


FREE_COMM = dict(bandwidth_gb_s=1e9, latency_us=0.0)
"""Links so fast that every transfer rounds to zero time."""


def with_communication(cluster: ClusterGraph, *, bandwidth: float = 1.0, overlap: float = 1.0) -> ClusterGraph:
    """``cluster`` with its communication efficiencies replaced."""
    comm = Communication(bandwidth_efficiency=bandwidth, overlap_efficiency=overlap)
    return ClusterGraph(cluster.topology.model_copy(update={"communication": comm}))
