"""Peak memory per device, per strategy, from the model's dimensions (REFERENCES §1 cost table).

The search calls :func:`memory_per_device` alone to drop plans that cannot fit before it
simulates anything, so this is closed-form and fast. Symbols: ``S`` image tokens, ``h``
hidden size, ``f`` MLP width, ``b`` batch per pass (2 with CFG on one group), ``q`` the
tokens a rank processes at once after sharding (the whole image's share during warm-up),
``L_d`` blocks on the device's stage, ``u``/``r``/``t`` Ulysses/Ring/tensor degrees.

====================  ==========================================================================
parameters            the stage's blocks (+ embeddings on the first stage, final layer on the
                      last), ÷ t under tensor parallelism; the whole model otherwise
activations           the working set of one block: ``b·q·(2h + (4h + f)/t)`` (residual and
                      norm, Q/K/V/output, MLP inner; flash attention: no S×S scores)
kv_buffers            PipeFusion with patches: ``2·L_d·b·S·h/(u·r)`` (stale K/V of the whole image
                      for every block of the stage); DistriFusion: ``2·L·b·S·h``
receive_buffers       PipeFusion: an incoming patch's activations, double-buffered ``2·b·q·h``;
                      sequence / tensor parallel: the collective's buffer ``2·b·q·h``
====================  ==========================================================================

All in bytes of ``dtype_bytes`` each (2: fp16/bf16). Framework overhead (CUDA context,
allocator slack, the text encoder and VAE) is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.models import ModelPreset
from profiles.topology_graph import ClusterGraph
from profiles.gpus import get_gpu
from simulator.plan import ParallelPlan, patch_rows
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


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def memory_per_device(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, *,
                      dtype_bytes: int = 2) -> dict[str, MemoryBreakdown]:
    """Peak bytes per device id the plan uses (ranks placed as the plan says)."""
    from simulator.rank_groups import coords

    d = plan.degrees
    arch = model.arch
    h, f = arch.hidden_size, arch.ffn_inner
    b = batch_per_pass(plan, model)
    rows, cols = model.token_grid(plan.height_px, plan.width_px)
    s = rows * cols
    seq = d.ulysses * d.ring * d.distrifusion
    patches = plan.patches if d.pipefusion > 1 else 1
    whole_image_passes = plan.warmup_steps > 0 or patches == 1
    peak_tokens = s if whole_image_passes else max(patch_rows(rows, min(patches, rows))) * cols
    q = _ceil_div(peak_tokens, seq)
    layer_params = arch.layer_params()
    stages = plan.stage_layers(model)
    devices = plan.devices(cluster)
    degrees = d.as_dict()
    out: dict[str, MemoryBreakdown] = {}
    for rank, device in enumerate(devices):
        stage = coords(rank, degrees)["pipefusion"]
        layers = stages[stage]
        params = sum(layer_params[i] for i in layers)
        if stage == 0:
            params += arch.embed_params
        if stage == len(stages) - 1:
            params += arch.final_params
        params = _ceil_div(params, d.tensor) * dtype_bytes
        activations = b * q * (2 * h + (4 * h + f) // d.tensor) * dtype_bytes
        kv = 0
        if d.pipefusion > 1 and patches > 1:
            kv = 2 * len(layers) * b * _ceil_div(s, d.ulysses * d.ring) * h * dtype_bytes
        if d.distrifusion > 1:
            kv = 2 * len(layers) * b * s * h * dtype_bytes
        receive = 0
        if d.pipefusion > 1 or d.ulysses * d.ring * d.tensor > 1:
            receive = 2 * b * q * h * dtype_bytes
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
