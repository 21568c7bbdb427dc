"""Peak memory per device, summed over the strategies' terms, from the model's dimensions.

The search calls :func:`memory_per_device` alone to drop plans that cannot fit before it
simulates anything, so this is closed-form and fast. Symbols: ``S`` image tokens, ``h``
hidden size, ``f`` MLP width, ``b`` batch per pass (2 with CFG on one group), ``q`` the
tokens a rank processes at once after every axis' :meth:`~simulator.strategies.base.Strategy.shard`
(the whole image's share during warm-up), ``t`` the weight shard the shards leave
(``LayerShape.tensor_shard``), ``L_d`` blocks on the device's stage.

====================  ==========================================================================
parameters            the stage's blocks (+ embeddings on the first stage, final layer on the
                      last), ÷ t
activations           the working set of one block: ``b·q·(2h + (4h + f)/t)`` (residual and
                      norm, Q/K/V/output, MLP inner; flash attention: no S×S scores)
kv_buffers            the largest of the active strategies' stale K/V buffers
                      (:meth:`~simulator.strategies.base.Strategy.buffers`)
receive_buffers       the largest of their receive buffers (an incoming patch, a collective's
                      buffer: ``2·b·q·h`` each)
====================  ==========================================================================

All in bytes of ``dtype_bytes`` each (2: fp16/bf16). Framework overhead (CUDA context,
allocator slack, the text encoder and VAE) is not counted. Each strategy's own terms are
written in its module's ``buffers``.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.costs.cost_model import LayerShape
from profiles.catalog.gpus import get_gpu
from profiles.catalog.models import ModelPreset
from profiles.topology.graph import ClusterGraph
from simulator.degree_rules import sequence_shards
from simulator.plan import ParallelPlan, patch_rows
from simulator.rank_groups import coords
from simulator.strategies import STRATEGIES
from simulator.strategies.base import MemoryContext, ceil_div
from simulator.strategies.cfg import batch_per_pass

GIB = 1024 ** 3


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes one device needs at peak, by what they hold."""

    parameters: int
    activations: int
    kv_buffers: int
    receive_buffers: int

    @property
    def total(self) -> int:
        return self.parameters + self.activations + self.kv_buffers + self.receive_buffers

    def as_dict(self) -> dict[str, int]:
        return {"parameters": self.parameters, "activations": self.activations, "kv_buffers": self.kv_buffers,
                "receive_buffers": self.receive_buffers, "total": self.total}


def memory_per_device(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, *,
                      dtype_bytes: int = 2) -> dict[str, MemoryBreakdown]:
    """Peak bytes per device id the plan uses (ranks placed as the plan says)."""
    d = plan.degrees
    degrees = d.as_dict()
    arch = model.arch
    h, f = arch.hidden_size, arch.ffn_inner
    b = batch_per_pass(degrees, model)
    rows, cols = model.token_grid(plan.height_px, plan.width_px)
    s = rows * cols
    patches = plan.patches_in_effect
    whole_image_passes = plan.warmup_steps > 0 or patches == 1
    peak_tokens = s if whole_image_passes else max(patch_rows(rows, min(patches, rows))) * cols
    active = STRATEGIES.active(degrees)
    local = LayerShape(arch.block_kinds()[0], peak_tokens, s, b)
    for strategy, degree in active:
        local = strategy.shard(local, degree)
    q, t = local.query_tokens, local.tensor_shard
    layer_params = arch.layer_params()
    stages = plan.stage_layers(model)
    devices = plan.devices(cluster)
    pipeline = STRATEGIES.pipeline.axis
    out: dict[str, MemoryBreakdown] = {}
    for rank, device in enumerate(devices):
        stage = coords(rank, degrees)[pipeline]  # type: ignore[index]
        layers = stages[stage]
        params = sum(layer_params[i] for i in layers)
        if stage == 0:
            params += arch.embed_params
        if stage == len(stages) - 1:
            params += arch.final_params
        params = ceil_div(params, t) * dtype_bytes
        activations = b * q * (2 * h + (4 * h + f) // t) * dtype_bytes
        ctx = MemoryContext(batch=b, image_tokens=s, query_tokens=q, hidden=h, layers=len(layers), patches=patches,
                            kv_shards=sequence_shards(degrees), dtype_bytes=dtype_bytes)
        terms = [strategy.buffers(ctx, degree) for strategy, degree in active]
        kv = max((m.kv_buffers for m in terms), default=0)
        receive = max((m.receive_buffers for m in terms), default=0)
        out[device] = MemoryBreakdown(params, activations, kv, receive)
    return out


def capacity_bytes(cluster: ClusterGraph, device: str) -> int:
    return int(get_gpu(cluster.gpu_of(device)).memory_bytes)


def oom_messages(memory: dict[str, MemoryBreakdown], cluster: ClusterGraph) -> list[str]:
    """One line per device that does not fit, naming what takes the space."""
    out = []
    for device, m in memory.items():
        cap = capacity_bytes(cluster, device)
        if m.total > cap:
            parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in m.as_dict().items() if k != "total" and v)
            out.append(f"{device}: needs {m.total / GIB:.1f} GiB ({parts}) > capacity {cap / GIB:.1f} GiB")
    return out
