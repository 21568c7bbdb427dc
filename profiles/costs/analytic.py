"""The analytic cost model: a roofline from the GPU data sheet.

A layer takes the longer of its FLOPs at the achievable compute rate and its bytes at the
memory bandwidth, and never less than a fixed per-layer launch floor. The achievable rate
falls for small problems: efficiency ``e(n) = e_max · n / (n + n_half)`` where ``n`` is the
work of one layer call in *full-width token equivalents*: batch × tokens (image queries plus,
in joint-attention blocks, the text tokens projected here) ÷ tensor shard. A GPU fills its SMs with output tiles of
each matmul and attention kernel; their number is tokens × output width (or tokens × heads),
so a call gets smaller, and less efficient, the same way whether its tokens are cut (sequence
splits and patches) or its width and heads are (tensor parallel):
``n`` tokens at shard ``s`` count like ``n/s`` tokens at full width. Counting tokens alone
would leave a tensor-sharded call at full efficiency. The text-only matmuls of
cross-attention blocks and of the embedding (:func:`~profiles.costs.flops.text_only_flops`) are
separate calls with the text's rows and are priced at their own efficiency. Time stays
monotone in the work: each part's FLOPs ``F`` are ∝ its ``n``, so ``F/e(n) ∝ n + n_half``
grows with ``n`` (and falls with the shard). The default constants are
guesses to be replaced by calibration (``pfplan profile calibrate``); a profile records
which values it used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from profiles.costs.components import Vae, VideoVae, pipeline_components, vae_from_config
from profiles.costs.cost_model import EMBED, FINAL, LayerShape
from profiles.costs.flops import (is_joint, layer_activation_bytes, layer_flops, layer_weight_bytes,
                           text_only_flops)
from profiles.catalog.gpus import GpuSpec, get_gpu
from profiles.catalog.models import ModelPreset


@dataclass(frozen=True)
class Efficiency:
    """The falling-efficiency curve and launch floor of the roofline."""

    max_efficiency: float = 0.6
    """Fraction of the data-sheet peak reached by large matmuls in eager PyTorch."""
    half_efficiency_tokens: float = 256.0
    """Full-width token equivalents per layer call (batch × tokens ÷ tensor shard) at which
    efficiency is half of max. A guess: the order at which a bf16 matmul of width ~1-3k no
    longer fills an A100/H100 (a few hundred 128×128 output tiles per kernel)."""
    layer_floor_us: float = 40.0
    """Kernel-launch floor of one block (about 10-20 kernels in eager mode)."""
    scale: float = 1.0
    """Multiplier from calibration against a measured run (1: uncalibrated)."""
    elementwise_launch_us: float = 5.0
    """Launch floor of one elementwise kernel in eager PyTorch (a few µs on recent GPUs and CUDA 12)."""
    scheduler_kernels: int = 12
    """Elementwise kernels of one scheduler step (DPM-Solver++ 2M: ~10–15 adds, muls and casts on the
    latent; Euler / DDIM fewer): a count read off diffusers' step code, rounded up."""


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

    # The optional costs of profiles.costs.cost_model.OPTIONAL_METHODS, from FLOPs and bytes of the
    # real components (profiles.costs.components); a cold first pass stays unknown (None: priced 0, listed).
    def scheduler_step_time_s(self, image_tokens: int) -> float | None:
        """``scheduler_kernels`` elementwise passes over the latent rows of ``image_tokens`` (fp32 math,
        3 tensors touched each), never below their launch floors."""
        arch, eff = self.model.arch, self.efficiency
        values = image_tokens * arch.patch_size ** 2 * arch.latent_channels
        memory = eff.scheduler_kernels * 3 * values * 4 / (self.gpu.memory_bandwidth_gb_s * 1e9)
        return eff.scale * max(memory, eff.scheduler_kernels * eff.elementwise_launch_us * 1e-6)

    def pass_overhead_s(self, blocks: int, batch: int) -> float | None:
        """0: on a GPU the host's per-call dispatch runs ahead of the kernels, and the launch-bound
        case is the per-block floor of :meth:`layer_time_s` (``layer_floor_us``)."""
        return 0.0

    def first_pass_overhead_s(self, batch: int) -> float | None:
        return None

    def elementwise_time_s(self, nbytes: float, kernels: int) -> float | None:
        """Memory-bound elementwise work, never below its kernels' launch floors."""
        eff = self.efficiency
        return eff.scale * max(nbytes / (self.gpu.memory_bandwidth_gb_s * 1e9), kernels * eff.elementwise_launch_us * 1e-6)

    def ring_attention_excess_s(self, degree: int, batch: int, query_tokens: int, kv_tokens: int,
                                hidden: int) -> float | None:
        """``degree − 1`` more attention launches and merges of the fp32 partial output and
        log-sum-exp (each merge reads and writes it twice: ``4·b·q·hidden`` fp32 values, in 6
        elementwise kernels, as ring-flash-attention's ``_update_out_and_lse`` in eager mode)."""
        return ring_merge_estimate_s(self.elementwise_time_s, hidden, degree, batch, query_tokens)

    def vae_decode_time_s(self, height_px: int, width_px: int) -> float | None:
        """The decoder's 3×3 convs at the large-matmul efficiency, or its activation traffic, whichever
        is longer (the full-resolution levels dominate both)."""
        vae = self._vae()
        if vae is None:
            return None
        eff = self.efficiency
        if isinstance(vae, VideoVae):  # a 3-D decoder over the clip: its convs at the large-matmul efficiency
            flops = vae.decode_flops(height_px, width_px, self.model.default_frames)
            return eff.scale * flops / (self.gpu.peak_tflops * 1e12 * eff.max_efficiency)
        compute = vae.decode_flops(height_px, width_px) / (self.gpu.peak_tflops * 1e12 * eff.max_efficiency)
        memory = vae.decode_bytes(height_px, width_px, self.dtype_bytes) / (self.gpu.memory_bandwidth_gb_s * 1e9)
        return eff.scale * max(compute, memory)

    def text_encode_time_s(self, prompts: int) -> float | None:
        """The pipeline's text encoders over ``prompts`` prompts (2 with CFG): weights read once per
        encoder, FLOPs at the efficiency of their token count (not yet placed on the simulated timeline)."""
        pipe = pipeline_components(self.model.spec, self.model.arch.latent_channels, tiny=self.model.tiny)
        if pipe.unknown:
            return None
        total = 0.0
        for _, enc, tokens in pipe.text_encoders:
            flops = prompts * tokens * enc.flops_per_token(tokens)
            weights = enc.params * self.dtype_bytes / (self.gpu.memory_bandwidth_gb_s * 1e9)
            total += max(self._compute_s(flops, prompts * tokens), weights)
        return self.efficiency.scale * total

    def _vae(self) -> Vae | VideoVae | None:
        if self.model.vae_config is not None:
            return vae_from_config(self.model.vae_config)
        return pipeline_components(self.model.spec, self.model.arch.latent_channels, tiny=self.model.tiny).vae

    def flops(self, shape: LayerShape) -> float:
        return layer_flops(self.model.arch, shape, text_tokens=self.model.text_tokens)

    def layer_time_s(self, shape: LayerShape) -> float:
        arch = self.model.arch
        eff = self.efficiency
        text = shape.text_query_tokens
        if text is None:  # None: all the model's text tokens, which only joint blocks project
            text = self.model.text_tokens if is_joint(arch, shape.kind) else 0
        text_flops, text_rows = text_only_flops(arch, shape, text_tokens=self.model.text_tokens)
        # embed and final run whole under tensor parallelism (layer_flops does not shard them)
        shard = 1 if shape.kind in (EMBED, FINAL) else shape.tensor_shard
        compute = self._compute_s(self.flops(shape) - text_flops, shape.batch * (shape.query_tokens + text) / shard) \
            + self._compute_s(text_flops, shape.batch * text_rows / shard)
        traffic = layer_weight_bytes(arch, shape.kind, dtype_bytes=self.dtype_bytes,
                                     tensor_shard=shape.tensor_shard) \
            + layer_activation_bytes(arch, shape, text_tokens=self.model.text_tokens,
                                     dtype_bytes=self.dtype_bytes)
        memory = traffic / (self.gpu.memory_bandwidth_gb_s * 1e9)
        return eff.scale * max(compute, memory, eff.layer_floor_us * 1e-6)

    def _compute_s(self, flops: float, tokens: float) -> float:
        """``flops`` done by calls of ``tokens`` full-width token equivalents, at ``e(tokens)``."""
        if flops <= 0 or tokens <= 0:
            return 0.0
        eff = self.efficiency
        rate = self.gpu.peak_tflops * 1e12 * eff.max_efficiency * tokens / (tokens + eff.half_efficiency_tokens)
        return flops / rate if rate > 0 else 0.0


RING_MERGE_KERNELS = 6
"""Elementwise kernels of one online-softmax merge (exp, sub, mul, add on the partial output and its log-sum-exp)."""


def ring_merge_estimate_s(elementwise_s, hidden: int, degree: int, batch: int, query_tokens: int) -> float | None:
    """Ring's extra per attention layer priced as elementwise kernels: ``degree − 1`` merges of
    ``4·b·q·hidden`` fp32 values plus one extra attention launch each."""
    if degree < 2:
        return 0.0
    hops = degree - 1
    return elementwise_s(hops * 4 * batch * query_tokens * hidden * 4, hops * (RING_MERGE_KERNELS + 1))
