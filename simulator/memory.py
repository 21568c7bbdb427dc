"""Peak memory per device of the whole deployment: transformer, text encoders, VAE, overhead.

The search calls :func:`memory_per_device` alone to drop plans that cannot fit before it
simulates anything, so this is closed-form and fast. Symbols: ``S`` image tokens, ``h``
hidden size, ``f`` MLP width, ``b`` batch per pass (2 with CFG on one group), ``q`` the
tokens a rank processes at once after every axis' :meth:`~simulator.strategies.base.Strategy.shard`
(the whole image's share during warm-up), ``t`` the weight shard the shards leave
(``LayerShape.tensor_shard``), ``L_d`` blocks on the device's stage.

====================  ==========================================================================
parameters            the transformer: the stage's blocks (+ embeddings on the first stage, final
                      layer on the last), ÷ t
activations           the working set of one block: ``b·q·(2h + (4h + f)/t)`` (residual and
                      norm, Q/K/V/output, MLP inner; flash attention: no S×S scores)
kv_buffers            the largest of the active strategies' stale K/V buffers
                      (:meth:`~simulator.strategies.base.Strategy.buffers`)
receive_buffers       the largest of their receive buffers (an incoming patch, a collective's
                      buffer: ``2·b·q·h`` each)
text_encoders         the pipeline's text encoders' weights (:mod:`profiles.costs.components`:
                      T5-XXL, CLIP-L/G, mT5, …), in ``text_encoder_dtype_bytes``; 0 when they
                      run off the device (``text_encoders="cpu"``)
encode_working        the largest encoder's live activations while it encodes the prompt(s)
vae                   the VAE's weights (encoder + decoder: the pipeline moves the whole module)
vae_decode            the decoder's live activations at its widest level for one image (one
                      tile with ``vae_decode="tiled"``; 0 with ``"none"``: latent output)
framework             CUDA context plus allocator slack (``fragmentation`` × the allocated
                      peak): :class:`MemoryOptions`, documented defaults, overridable
====================  ==========================================================================

The phases do not overlap: the peak *allocated* is the largest of encoding (weights resident
then + ``encode_working``), denoising (+ activations, K/V and receive buffers) and decoding
(+ ``vae_decode``); text encoders ``"freed"`` after encoding count in the first phase only.
``allocated`` is what ``torch.cuda.max_memory_allocated`` reports (what published peak-memory
figures print); ``total`` adds ``framework`` and is what must fit the device. Bytes are of
``dtype_bytes`` each (2: fp16/bf16). Each strategy's own terms are written in its module's
``buffers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from profiles.costs.components import Pipeline, VideoVae, pipeline_components, vae_from_config, weight_bytes
from profiles.costs.cost_model import LayerShape
from profiles.catalog.gpus import get_gpu
from profiles.catalog.models import ModelPreset
from profiles.topology.graph import ClusterGraph
from simulator.degree_rules import sequence_shards
from simulator.plan import ParallelPlan, patch_rows
from simulator.rank_groups import AXES
from simulator.strategies import STRATEGIES
from simulator.strategies.base import MemoryContext, ceil_div
from simulator.strategies.cfg import batch_per_pass

GIB = 1024 ** 3
MIB = 1024 ** 2

TextEncoderPlace = Literal["gpu", "freed", "cpu"]
VaeDecode = Literal["full", "tiled", "parallel", "none"]


@dataclass(frozen=True)
class MemoryOptions:
    """What a user can change about the deployment's memory, and the overhead figures.

    Defaults are how a diffusers pipeline runs when moved to the GPU whole (xDiT's examples do
    this on every rank): encoders resident, full-image decode. :data:`PFRUN_RUNS` says which
    values pfrun executes; the others are planning knobs for deployments that support them.
    """

    text_encoders: TextEncoderPlace = "gpu"
    """``gpu``: resident on every device; ``freed``: deleted after encoding (peak only while
    encoding); ``cpu``: encoded elsewhere (on the CPU, or once by pfrun's launcher)."""
    text_encoder_dtype: Literal["fp32", "fp16", "bf16", "fp8"] | None = None
    """The encoders' weight dtype; None: the family pipeline's usual dtype (fp16; bf16 for Flux) when
    the plan is in 2-byte floats, fp32 otherwise. ``fp8``: a quantised T5 (xDiT's
    ``--use_fp8_t5_encoder``, optimum-quanto qfloat8). In fp16 T5 keeps its ``wo`` in fp32."""
    vae_decode: VaeDecode = "full"
    """``full``: one decode of the whole image (or clip); ``tiled``: diffusers' ``vae.enable_tiling()``,
    one tile live at a time; ``parallel``: every rank decodes a band of rows (xDiT's patch-parallel
    VAE), the decoded image or clip gathered whole; ``none``: the latent is the output
    (``output_type="latent"``). Video VAEs: :class:`profiles.costs.components.VideoVae`."""
    vae_tile_px: int = 512
    """Tile side of a tiled decode (diffusers' ``tile_sample_min_size``; 512 for the SD VAE)."""
    cuda_context_bytes: int = 500 * MIB
    """CUDA context + kernels loaded by torch, not in ``max_memory_allocated``: typically
    300–600 MiB per process on recent GPUs and CUDA 12 (nvidia-smi minus torch's reserved
    bytes on an idle process); 0 on CPU ranks. Override when measured."""
    fragmentation: float = 0.05
    """Allocator slack as a fraction of the allocated peak (reserved − allocated of torch's
    caching allocator, a few % for inference without ``expandable_segments``). Override when measured."""


PFRUN_RUNS: dict[str, frozenset[str]] = {
    "text_encoders": frozenset({"cpu"}),
    "vae_decode": frozenset({"full", "none"}),
}
"""Knob values pfrun executes today: it encodes the prompt once in the launcher (``cpu``) and
decodes the whole latent on one rank (or not at all). The rest are plan-only knobs."""

PFRUN_OPTIONS = MemoryOptions(text_encoders="cpu", vae_decode="full")
"""What a pfrun run holds per rank (what its preflight should compare with free memory)."""


def not_run_by_pfrun(options: MemoryOptions) -> list[str]:
    """``knob=value`` for each chosen value pfrun does not execute."""
    return [f"{knob}={getattr(options, knob)}" for knob, runs in PFRUN_RUNS.items()
            if getattr(options, knob) not in runs]


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes one device needs at peak, by what they hold."""

    parameters: int
    activations: int
    kv_buffers: int
    receive_buffers: int
    text_encoders: int = 0
    encode_working: int = 0
    vae: int = 0
    vae_decode: int = 0
    text_encoders_freed: bool = False
    fragmentation: float = 0.0
    cuda_context: int = 0

    @property
    def denoise_peak(self) -> int:
        resident = 0 if self.text_encoders_freed else self.text_encoders
        return self.parameters + self.vae + resident + self.activations + self.kv_buffers + self.receive_buffers

    @property
    def encode_peak(self) -> int:
        if not self.text_encoders:
            return 0
        return self.parameters + self.vae + self.text_encoders + self.encode_working

    @property
    def decode_peak(self) -> int:
        resident = 0 if self.text_encoders_freed else self.text_encoders
        return self.parameters + self.vae + resident + self.vae_decode

    @property
    def allocated(self) -> int:
        """Peak allocated bytes (what ``torch.cuda.max_memory_allocated`` reports)."""
        return max(self.denoise_peak, self.encode_peak, self.decode_peak)

    @property
    def framework(self) -> int:
        return int(self.allocated * self.fragmentation) + self.cuda_context

    @property
    def total(self) -> int:
        return self.allocated + self.framework

    @property
    def phase(self) -> str:
        """The phase the peak falls in."""
        peaks = {"denoise": self.denoise_peak, "encode": self.encode_peak, "decode": self.decode_peak}
        return max(peaks, key=peaks.__getitem__)

    def at_peak(self) -> dict[str, int]:
        """What the device holds at its peak (in :attr:`phase`), term by term; the values sum to :attr:`total`.

        Activations, K/V and receive buffers are live only while denoising, the encoders' working
        set while encoding, the decode's working set while decoding; terms not live then are 0.
        """
        phase = self.phase
        text = self.text_encoders if phase == "encode" or not self.text_encoders_freed else 0
        denoise = phase == "denoise"
        return {"parameters": self.parameters, "activations": self.activations if denoise else 0,
                "kv_buffers": self.kv_buffers if denoise else 0,
                "receive_buffers": self.receive_buffers if denoise else 0, "text_encoders": text,
                "vae": self.vae, "working": self.encode_working if phase == "encode"
                else self.vae_decode if phase == "decode" else 0, "framework": self.framework}

    def as_dict(self) -> dict[str, int]:
        return {"parameters": self.parameters, "activations": self.activations, "kv_buffers": self.kv_buffers,
                "receive_buffers": self.receive_buffers, "text_encoders": self.text_encoders,
                "encode_working": self.encode_working, "vae": self.vae, "vae_decode": self.vae_decode,
                "framework": self.framework, "allocated": self.allocated, "total": self.total}


def _pipeline(model: ModelPreset) -> Pipeline:
    return pipeline_components(model.spec, model.arch.latent_channels, tiny=model.tiny)


def component_terms(plan: ParallelPlan, model: ModelPreset, *, dtype_bytes: int,
                    options: MemoryOptions) -> dict[str, int | bool]:
    """The per-device bytes of everything beside the transformer (same on every device)."""
    pipe = _pipeline(model)
    te_dtype = options.text_encoder_dtype or (pipe.dtype if dtype_bytes == 2 else "fp32")
    prompts = 2 if model.uses_cfg else 1
    te = work = 0
    if options.text_encoders != "cpu":
        for _, enc, tokens in pipe.text_encoders:
            te += weight_bytes(enc, te_dtype)
            work = max(work, enc.working_bytes(prompts, tokens, dtype_bytes))
    vae_spec = vae_from_config(model.vae_config) if model.vae_config is not None else pipe.vae
    vae = decode = 0
    shards = plan.world_size if options.vae_decode == "parallel" else 1
    if isinstance(vae_spec, VideoVae):  # a 3-D decoder: frames, measured working set
        vae = vae_spec.params * dtype_bytes
        if options.vae_decode != "none":
            decode = vae_spec.decode_working_bytes(plan.height_px, plan.width_px, dtype_bytes, model.default_frames,
                                                   tiled=options.vae_decode == "tiled", shards=shards)
    elif vae_spec is not None:
        vae = vae_spec.params * dtype_bytes
        if options.vae_decode == "parallel":  # a band of rows (+ a latent row's halo each side), the image whole
            rows = min(plan.height_px, -(-plan.height_px // shards) + 16)
            decode = vae_spec.decode_working_bytes(rows, plan.width_px, dtype_bytes) \
                + vae_spec.out_channels * plan.height_px * plan.width_px * dtype_bytes
        elif options.vae_decode == "full":
            decode = vae_spec.decode_working_bytes(plan.height_px, plan.width_px, dtype_bytes)
        elif options.vae_decode == "tiled":
            side_h, side_w = min(options.vae_tile_px, plan.height_px), min(options.vae_tile_px, plan.width_px)
            # one tile's working set + the decoded tiles kept for blending (~ the image, with overlap)
            decode = vae_spec.decode_working_bytes(side_h, side_w, dtype_bytes) \
                + int(vae_spec.out_channels * plan.height_px * plan.width_px * dtype_bytes / 0.75 ** 2)
    return {"text_encoders": te, "encode_working": work, "vae": vae, "vae_decode": decode,
            "text_encoders_freed": options.text_encoders == "freed"}


def memory_per_rank(plan: ParallelPlan, model: ModelPreset, *, dtype_bytes: int = 2,
                    options: MemoryOptions | None = None) -> list[MemoryBreakdown]:
    """Peak bytes per rank, in rank order (no topology needed: a rank's bytes do not depend on its device).

    A rank's bytes depend only on its pipeline stage (every other axis shards all ranks alike),
    so each stage is priced once (:func:`memory_per_stage`) however many ranks share it.
    """
    degrees = plan.degrees.as_dict()
    per_stage = memory_per_stage(plan, model, dtype_bytes=dtype_bytes, options=options)
    return [per_stage[stage] for stage in stage_of_ranks(degrees)]


def stage_of_ranks(degrees: dict[str, int]) -> list[int]:
    """The pipeline stage of every rank, in rank order (:func:`simulator.rank_groups.coords`'s row-major
    numbering: the stage changes every ``inner`` ranks, where ``inner`` is the product of the later axes)."""
    pipeline = STRATEGIES.pipeline.axis
    stages = degrees.get(pipeline, 1)
    inner = 1
    for axis in AXES[AXES.index(pipeline) + 1:]:
        inner *= degrees.get(axis, 1)
    world = stages * inner
    for axis in AXES[:AXES.index(pipeline)]:
        world *= degrees.get(axis, 1)
    return [(rank // inner) % stages for rank in range(world)]


def memory_per_stage(plan: ParallelPlan, model: ModelPreset, *, dtype_bytes: int = 2,
                     options: MemoryOptions | None = None) -> list[MemoryBreakdown]:
    """Peak bytes of a rank of each pipeline stage, stage 0 first."""
    options = options or MemoryOptions()
    degrees = plan.degrees.as_dict()
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
    rest = component_terms(plan, model, dtype_bytes=dtype_bytes, options=options)
    out: list[MemoryBreakdown] = []
    for stage in range(len(stages)):
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
        out.append(MemoryBreakdown(params, activations, kv, receive, fragmentation=options.fragmentation,
                                   cuda_context=options.cuda_context_bytes, **rest))  # type: ignore[arg-type]
    return out


def memory_per_device(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, *,
                      dtype_bytes: int = 2, options: MemoryOptions | None = None) -> dict[str, MemoryBreakdown]:
    """Peak bytes per device id the plan uses (ranks placed as the plan says)."""
    per_rank = memory_per_rank(plan, model, dtype_bytes=dtype_bytes, options=options)
    return dict(zip(plan.devices(cluster), per_rank))


def peak_bytes_per_device(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, *,
                          dtype_bytes: int = 2, options: MemoryOptions | None = None) -> dict[str, int]:
    """Predicted peak bytes each device must have free for the plan (allocated + framework overhead).

    What pfrun's preflight compares with a device's free memory; pass :data:`PFRUN_OPTIONS`
    for what a pfrun rank holds (prompt encoded in the launcher), and ``cuda_context_bytes=0``
    (via :class:`MemoryOptions`) for CPU ranks.
    """
    return {d: m.total for d, m in memory_per_device(plan, model, cluster, dtype_bytes=dtype_bytes,
                                                    options=options).items()}


def capacity_bytes(cluster: ClusterGraph, device: str) -> int:
    return int(get_gpu(cluster.gpu_of(device)).memory_bytes)


def oom_messages(memory: dict[str, MemoryBreakdown], cluster: ClusterGraph) -> list[str]:
    """One line per device that does not fit, naming what takes the space."""
    out = []
    for device, m in memory.items():
        cap = capacity_bytes(cluster, device)
        if m.total > cap:
            parts = ", ".join(f"{k} {v / GIB:.1f}" for k, v in m.as_dict().items()
                              if k not in ("total", "allocated") and v)
            out.append(f"{device}: needs {m.total / GIB:.1f} GiB ({parts}) > capacity {cap / GIB:.1f} GiB")
    return out
