"""The analytic cost model: a roofline from the GPU data sheet.

A layer takes the longer of its FLOPs at the achievable compute rate and its bytes at the
memory bandwidth, and never less than a fixed per-layer launch floor. The achievable rate
falls for small problems: efficiency ``e(n) = e_max · n / (n + n_half)`` for ``n`` tokens
processed per weight load (batch × query tokens), which is how eager PyTorch behaves when
patches get small. The default constants are guesses to be replaced by calibration
(``pfplan profile calibrate``); a profile records which values it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from profiles.cost_model import LayerShape
from profiles.flops import layer_activation_bytes, layer_flops, layer_weight_bytes
from profiles.gpus import GpuSpec, get_gpu
from profiles.models import ModelPreset


@dataclass(frozen=True)
class Efficiency:
    """The falling-efficiency curve and launch floor of the roofline."""

    max_efficiency: float = 0.6
    """Fraction of the data-sheet peak reached by large matmuls in eager PyTorch."""
    half_efficiency_tokens: float = 256.0
    """Tokens per layer call at which efficiency is half of max."""
    layer_floor_us: float = 40.0
    """Kernel-launch floor of one block (about 10-20 kernels in eager mode)."""
    scale: float = 1.0
    """Multiplier from calibration against a measured run (1: uncalibrated)."""


@dataclass
class AnalyticCostModel:
    """Roofline seconds for ``model``'s layers on ``gpu``."""

    model: ModelPreset
    gpu: GpuSpec
    gpu_name: str
    dtype_bytes: int = 2
    efficiency: Efficiency = field(default_factory=Efficiency)

    @classmethod
    def for_gpu(cls, model: ModelPreset, gpu_name: str, *, dtype_bytes: int | None = None,
                efficiency: Efficiency | None = None) -> AnalyticCostModel:
        spec = get_gpu(gpu_name)
        if dtype_bytes is None:
            dtype_bytes = 4 if gpu_name == "cpu" else 2
        return cls(model, spec, gpu_name, dtype_bytes, efficiency or Efficiency())

    @property
    def name(self) -> str:
        return f"analytic:{self.gpu_name}"

    def flops(self, shape: LayerShape) -> float:
        return layer_flops(self.model.arch, shape, text_tokens=self.model.text_tokens)

    def layer_time_s(self, shape: LayerShape) -> float:
        arch = self.model.arch
        eff = self.efficiency
        tokens = shape.batch * (shape.query_tokens + (shape.text_query_tokens or 0))
        rate = self.gpu.peak_tflops * 1e12 * eff.max_efficiency * tokens / (tokens + eff.half_efficiency_tokens)
        compute = self.flops(shape) / rate if rate > 0 else 0.0
        traffic = layer_weight_bytes(arch, shape.kind, dtype_bytes=self.dtype_bytes,
                                     tensor_shard=shape.tensor_shard) \
            + layer_activation_bytes(arch, shape, text_tokens=self.model.text_tokens,
                                     dtype_bytes=self.dtype_bytes)
        memory = traffic / (self.gpu.memory_bandwidth_gb_s * 1e9)
        return eff.scale * max(compute, memory, eff.layer_floor_us * 1e-6)
