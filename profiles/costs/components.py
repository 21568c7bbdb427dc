"""The pipeline's other components — text encoders and the VAE — from their real dimensions, torch-free.

A DiT pipeline holds more than its transformer: PixArt-α's T5-XXL alone has ≈ 4.8 B
parameters, eight times the transformer. The memory model (:mod:`simulator.memory`) and the
cost model need their sizes and FLOPs without importing torch, so each component is written
here as the few numbers of its standard ``config.json`` and its parameter count is computed
from them layer by layer, as transformers / diffusers build it. ``tests/profiles/test_components.py``
builds every component on torch's meta device from the same configs and checks the counts
are equal, so these formulas cannot drift from the libraries silently.

Which components a family's pipeline loads comes from its family spec (``text_encoders`` by
kind, the VAE's latent channels): :func:`pipeline_components`. An encoder kind with no
dimensions here (a new plug-in's) is not counted, and the pipeline says so (``unknown``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class T5Encoder:
    """``T5EncoderModel`` / ``MT5EncoderModel`` (gated-GELU feed-forward, v1.1 style)."""

    name: str
    vocab_size: int
    d_model: int
    d_kv: int
    num_heads: int
    d_ff: int
    num_layers: int
    relative_attention_num_buckets: int = 32
    source: str = ""

    @property
    def params(self) -> int:
        inner = self.num_heads * self.d_kv
        attention = 4 * self.d_model * inner                 # q, k, v, o (no biases)
        feed_forward = 3 * self.d_model * self.d_ff          # wi_0, wi_1, wo (gated)
        block = attention + feed_forward + 2 * self.d_model  # two RMS norms (weight only)
        rel_bias = self.relative_attention_num_buckets * self.num_heads  # block 0 only
        return self.vocab_size * self.d_model + self.num_layers * block + rel_bias + self.d_model

    @property
    def fp32_params(self) -> int:
        """Weights transformers keeps in fp32 when the rest loads in fp16 (``_keep_in_fp32_modules = ["wo"]``:
        the feed-forward output projections, to avoid fp16 overflow)."""
        return self.num_layers * self.d_ff * self.d_model

    @property
    def hidden(self) -> int:
        return self.d_model

    def flops_per_token(self, tokens: int) -> float:
        """Forward FLOPs per token: 2·(matmul weights) plus attention over ``tokens``."""
        inner = self.num_heads * self.d_kv
        matmul = self.num_layers * (4 * self.d_model * inner + 3 * self.d_model * self.d_ff)
        return 2.0 * matmul + self.num_layers * 4.0 * tokens * inner

    def working_bytes(self, batch: int, tokens: int, dtype_bytes: int) -> int:
        """One layer's live activations: residual, normed, Q/K/V/O, gated MLP inner ×2, scores."""
        inner = self.num_heads * self.d_kv
        per_token = 2 * self.d_model + 4 * inner + 3 * self.d_ff
        return batch * (tokens * per_token + self.num_heads * tokens * tokens) * dtype_bytes


@dataclass(frozen=True)
class ClipText:
    """``CLIPTextModel`` (``with_projection``: ``CLIPTextModelWithProjection``)."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    max_position_embeddings: int = 77
    projection_dim: int = 0
    """0: no projection (``CLIPTextModel``); else ``text_projection`` is hidden × this, no bias."""
    source: str = ""

    @property
    def params(self) -> int:
        h, i = self.hidden_size, self.intermediate_size
        layer = 4 * (h * h + h) + 2 * 2 * h + (h * i + i) + (i * h + h)
        embeddings = (self.vocab_size + self.max_position_embeddings) * h
        return embeddings + self.num_layers * layer + 2 * h + h * self.projection_dim

    @property
    def hidden(self) -> int:
        return self.hidden_size

    def flops_per_token(self, tokens: int) -> float:
        h, i = self.hidden_size, self.intermediate_size
        return 2.0 * self.num_layers * (4 * h * h + 2 * h * i) + self.num_layers * 4.0 * tokens * h

    def working_bytes(self, batch: int, tokens: int, dtype_bytes: int) -> int:
        h, i = self.hidden_size, self.intermediate_size
        return batch * (tokens * (6 * h + 2 * i) + self.num_heads * tokens * tokens) * dtype_bytes


@dataclass(frozen=True)
class BertText:
    """``BertModel`` with its pooler (HunyuanDiT's bilingual CLIP text tower)."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    source: str = ""

    @property
    def params(self) -> int:
        h, i = self.hidden_size, self.intermediate_size
        embeddings = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h
        layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
        return embeddings + self.num_layers * layer + (h * h + h)

    @property
    def hidden(self) -> int:
        return self.hidden_size

    def flops_per_token(self, tokens: int) -> float:
        h, i = self.hidden_size, self.intermediate_size
        return 2.0 * self.num_layers * (4 * h * h + 2 * h * i) + self.num_layers * 4.0 * tokens * h

    def working_bytes(self, batch: int, tokens: int, dtype_bytes: int) -> int:
        h, i = self.hidden_size, self.intermediate_size
        return batch * (tokens * (6 * h + 2 * i) + self.num_heads * tokens * tokens) * dtype_bytes


TextEncoder = T5Encoder | ClipText | BertText

DTYPE_BYTES: dict[str, float] = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1}


def weight_bytes(component: TextEncoder, dtype: str) -> int:
    """Bytes of the component's weights loaded in ``dtype`` (``fp8``: optimum-quanto qfloat8 weights).

    T5 in fp16 keeps its ``wo`` projections in fp32 (:attr:`T5Encoder.fp32_params`), as
    transformers' ``from_pretrained`` does; bf16 and fp8 loads do not.
    """
    keep = getattr(component, "fp32_params", 0) if dtype == "fp16" else 0
    return int((component.params - keep) * DTYPE_BYTES[dtype] + keep * 4)


def _conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout


def _resnet(cin: int, cout: int) -> int:
    """``ResnetBlock2D``: two group norms, two 3×3 convs, a 1×1 shortcut when widths differ."""
    shortcut = _conv(cin, cout, 1) if cin != cout else 0
    return 2 * cin + _conv(cin, cout) + 2 * cout + _conv(cout, cout) + shortcut


def _mid(c: int, layers: int) -> int:
    """``UNetMidBlock2D``: ``layers + 1`` resnets and one attention (group norm, q/k/v/out with bias)."""
    return (layers + 1) * _resnet(c, c) + 2 * c + 4 * (c * c + c)


@dataclass(frozen=True)
class Vae:
    """``AutoencoderKL`` with down/up encoder blocks (the SD, SDXL, SD3 and Flux VAEs)."""

    name: str
    latent_channels: int
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    in_channels: int = 3
    out_channels: int = 3
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_layers: int = 1
    source: str = ""

    @property
    def encoder_params(self) -> int:
        ch = self.block_out_channels
        total = _conv(self.in_channels, ch[0])
        cin = ch[0]
        for level, cout in enumerate(ch):
            for _ in range(self.layers_per_block):
                total += _resnet(cin, cout)
                cin = cout
            if level < len(ch) - 1:
                total += _conv(cout, cout)  # Downsample2D
        total += _mid(ch[-1], self.mid_block_layers)
        return total + 2 * ch[-1] + _conv(ch[-1], 2 * self.latent_channels)

    @property
    def decoder_params(self) -> int:
        ch = tuple(reversed(self.block_out_channels))
        total = _conv(self.latent_channels, ch[0]) + _mid(ch[0], self.mid_block_layers)
        cin = ch[0]
        for level, cout in enumerate(ch):
            for _ in range(self.layers_per_block + 1):
                total += _resnet(cin, cout)
                cin = cout
            if level < len(ch) - 1:
                total += _conv(cout, cout)  # Upsample2D
        return total + 2 * ch[-1] + _conv(ch[-1], self.out_channels)

    @property
    def params(self) -> int:
        quant = _conv(2 * self.latent_channels, 2 * self.latent_channels, 1) if self.use_quant_conv else 0
        post = _conv(self.latent_channels, self.latent_channels, 1) if self.use_post_quant_conv else 0
        return self.encoder_params + self.decoder_params + quant + post

    def decode_levels(self, height_px: int, width_px: int) -> list[tuple[int, int, int]]:
        """``(input channels, output channels, pixels)`` of each decoder level, coarsest first."""
        ch = tuple(reversed(self.block_out_channels))
        scale = 2 ** (len(ch) - 1)
        out, cin = [], ch[0]
        for level, cout in enumerate(ch):
            side = scale // (2 ** level)
            out.append((cin, cout, (height_px // side) * (width_px // side)))
            cin = cout
        return out

    def decode_working_bytes(self, height_px: int, width_px: int, dtype_bytes: int) -> int:
        """Live activations at the decoder's widest point, for one image.

        A resnet keeps its input for the residual while its group norm's output and the
        SiLU's output exist (3 tensors of the input width); an upsampler holds its input,
        the 2×-interpolated copy and the conv's output. The peak is the largest of these
        over the levels — the full-resolution levels dominate (SD VAE at 1024²: 256 channels
        × 1024² at the last up-block's first resnet).
        """
        peak = 0
        levels = self.decode_levels(height_px, width_px)
        for i, (cin, cout, pixels) in enumerate(levels):
            resnet = (3 * cin + cout) * pixels
            upsample = cout * (pixels + 2 * 4 * pixels) if i < len(levels) - 1 else 0
            peak = max(peak, resnet, upsample)
        image = self.out_channels * height_px * width_px
        return (peak + image) * dtype_bytes

    def decode_bytes(self, height_px: int, width_px: int, dtype_bytes: int) -> float:
        """Activation bytes one decode moves through memory: each resnet reads and writes its
        width ~6 times (two group norms, two SiLUs, two convs), each upsampler 3 times at 2×."""
        total = 0.0
        levels = self.decode_levels(height_px, width_px)
        for i, (cin, cout, pixels) in enumerate(levels):
            total += (self.layers_per_block + 1) * 12 * cout * pixels
            if i < len(levels) - 1:
                total += 3 * 2 * cout * 4 * pixels
        return total * dtype_bytes

    def decode_flops(self, height_px: int, width_px: int) -> float:
        """Forward FLOPs of one image's decode: 2 × the MACs of the decoder's convs and of its mid-block
        attention (q/k/v/out projections and the pixels × pixels scores at the coarsest level)."""
        macs = 0.0
        levels = self.decode_levels(height_px, width_px)
        cin, _, pixels = levels[0]
        if self.use_post_quant_conv:
            macs += self.latent_channels ** 2 * pixels                             # post_quant_conv 1×1
        macs += self.latent_channels * cin * 9 * pixels                            # conv_in
        macs += (self.mid_block_layers + 1) * 2 * 9 * cin * cin * pixels           # mid resnets
        macs += 4 * cin * cin * pixels + 2 * pixels * pixels * cin                  # mid attention
        for i, (cin, cout, pixels) in enumerate(levels):
            macs += 9 * (cin * cout + cout * cout) * pixels                        # first resnet
            macs += self.layers_per_block * 2 * 9 * cout * cout * pixels           # the other resnets
            if cin != cout:
                macs += cin * cout * pixels                                        # 1×1 shortcut
            if i < len(levels) - 1:
                macs += 9 * cout * cout * 4 * pixels                               # upsampler conv at 2×
        last = levels[-1]
        macs += last[1] * self.out_channels * 9 * last[2]                          # conv_out
        return 2.0 * macs


@dataclass(frozen=True)
class VideoVae:
    """A causal 3-D video VAE's decoder (``AutoencoderKLWan``, ``AutoencoderKLHunyuanVideo``), from measurements.

    Unlike :class:`Vae`, whose counts follow from the 2-D decoder's layers, these figures were
    measured on the diffusers class with its default (published) config on torch's meta device
    — no weights, no compute — by ``python -m benchmarks.video_vae`` (``tests/profiles/test_video_vae.py``
    re-measures them at another size): the parameter count, the decode FLOPs per output
    pixel-frame (``torch.utils.flop_counter.FlopCounterMode``) and the decoder's peak live
    activations (every storage the decode's aten ops create, freed when its last tensor dies)
    per output pixel of one frame. Both decoders work through the clip a few latent frames at
    a time (Wan: one latent frame per call with a causal feature cache; HunyuanVideo: temporal
    tiles of 16 frames), so the working set grows with the frame *area*, not the clip length;
    the decoded clip itself (3 values per pixel-frame) is kept whole. Tiled decode
    (``vae.enable_tiling()``: 256-px tiles at a 192-px stride, blended) keeps every decoded tile
    of the whole clip until it blends them, so its peak grows with the clip: a tile's working
    set plus the clip, or, for long clips, a few clip-sized buffers (whichever is larger).
    """

    name: str
    diffusers_class: str
    params: int
    latent_channels: int
    decode_flops_per_pixel_frame: float
    work_values_per_pixel: float
    """Peak live decoder values per output pixel of one frame (untiled), beyond the decoded clip."""
    tiled_clip_copies: float
    """Tiled, long clips: the peak in decoded-clip sizes (every decoded tile with its overlaps, the
    blended rows, the concatenated clip): the measured peak over the clip's bytes at 1280×720×81."""
    temporal_factor: int = 4
    spatial_factor: int = 8
    tile_px: int = 256
    tile_stride_px: int = 192
    out_channels: int = 3
    source: str = ""

    def decode_flops(self, height_px: int, width_px: int, frames: int = 1) -> float:
        """FLOPs of decoding a clip of ``frames`` frames."""
        return self.decode_flops_per_pixel_frame * height_px * width_px * frames

    def clip_bytes(self, height_px: int, width_px: int, frames: int, dtype_bytes: int) -> int:
        return self.out_channels * frames * height_px * width_px * dtype_bytes

    def decode_working_bytes(self, height_px: int, width_px: int, dtype_bytes: int, frames: int = 1, *,
                             tiled: bool = False, shards: int = 1) -> int:
        """Peak decode activations on one device: the decoder's working set (one tile's when ``tiled``;
        ``1/shards`` of the frame's rows under a row-parallel decode, plus a tile-high halo each
        side) and the decoded clip (blended tiles when ``tiled``)."""
        clip = self.clip_bytes(height_px, width_px, frames, dtype_bytes)
        if tiled and (height_px > self.tile_px or width_px > self.tile_px):  # else diffusers decodes untiled
            tile = self.work_values_per_pixel * self.tile_px * self.tile_px * dtype_bytes
            return int(max(tile + clip, self.tiled_clip_copies * clip))
        rows = height_px if shards <= 1 else min(height_px, -(-height_px // shards) + 2 * self.spatial_factor)
        return int(self.work_values_per_pixel * rows * width_px * dtype_bytes + clip)


# --- the standard components (config.json of each, as published on the Hugging Face hub) ---

T5_V1_1_XXL = T5Encoder("t5-v1_1-xxl", vocab_size=32128, d_model=4096, d_kv=64, num_heads=64, d_ff=10240,
                        num_layers=24, source="google/t5-v1_1-xxl config.json (PixArt, SD3 text_encoder_3, "
                                              "Flux text_encoder_2)")
MT5_XL = T5Encoder("mt5-xl", vocab_size=250112, d_model=2048, d_kv=64, num_heads=32, d_ff=5120, num_layers=24,
                   source="google/mt5-xl config.json (HunyuanDiT text_encoder_2, cross_attention_dim_t5 2048)")
CLIP_L = ClipText("clip-vit-large-patch14", vocab_size=49408, hidden_size=768, intermediate_size=3072,
                  num_layers=12, num_heads=12, source="openai/clip-vit-large-patch14 text_config")
CLIP_L_PROJ = ClipText("clip-vit-large-patch14 (with projection)", vocab_size=49408, hidden_size=768,
                       intermediate_size=3072, num_layers=12, num_heads=12, projection_dim=768,
                       source="SD3 text_encoder config.json (CLIPTextModelWithProjection)")
CLIP_G_PROJ = ClipText("clip-vit-bigG-14 (with projection)", vocab_size=49408, hidden_size=1280,
                       intermediate_size=5120, num_layers=32, num_heads=20, projection_dim=1280,
                       source="SDXL / SD3 text_encoder_2 config.json (CLIPTextModelWithProjection)")
HUNYUAN_BERT = BertText("hunyuan-clip-bert", vocab_size=47020, hidden_size=1024, intermediate_size=4096,
                        num_layers=24, num_heads=16, source="HunyuanDiT-v1.2-Diffusers text_encoder config.json "
                                                           "(BertModel, Chinese-RoBERTa-large sized)")
SD_VAE = Vae("sd-vae (4 latent channels)", latent_channels=4,
             source="stabilityai/sd-vae-ft-ema, sdxl-vae config.json (PixArt-α, DiT, HunyuanDiT)")
SD3_FLUX_VAE = Vae("sd3/flux vae (16 latent channels)", latent_channels=16, use_quant_conv=False,
                   use_post_quant_conv=False, source="SD3-medium / FLUX.1-dev vae config.json")


ENCODERS: dict[str, tuple[TextEncoder, TextEncoder]] = {
    "T5-XXL": (T5_V1_1_XXL, T5_V1_1_XXL),
    "mT5": (MT5_XL, MT5_XL),
    "CLIP-L": (CLIP_L, CLIP_L_PROJ),
    "CLIP-G": (CLIP_G_PROJ, CLIP_G_PROJ),
    "BERT": (HUNYUAN_BERT, HUNYUAN_BERT),
}
"""A family spec's encoder ``kind`` → (component when only its pooled embedding is used, component when
its token embeddings are): FluxPipeline loads ``CLIPTextModel``, StableDiffusion3Pipeline
``CLIPTextModelWithProjection`` (768² more weights)."""
VAES: dict[int, Vae] = {4: SD_VAE, 16: SD3_FLUX_VAE}
"""Latent channels → the standard VAE of that latent space."""

WAN_VAE = VideoVae("Wan 2.1 VAE", "AutoencoderKLWan", params=126_892_531, latent_channels=16,
                   decode_flops_per_pixel_frame=8.51e6, work_values_per_pixel=5064, tiled_clip_copies=4.667,
                   source="diffusers 0.42 AutoencoderKLWan() on the meta device (python -m benchmarks.video_vae): "
                          "FLOPs at 832x480x81 (8.70e6 at 64x64x9: the first frame weighs more), peak live bf16 "
                          "bytes 10 128 per pixel at 832x480 and 1280x720; tiled: 1.947 GiB at 1280x720x81")
HUNYUAN_VIDEO_VAE = VideoVae("HunyuanVideo VAE", "AutoencoderKLHunyuanVideo", params=246_478_803,
                             latent_channels=16, decode_flops_per_pixel_frame=2.44e7, work_values_per_pixel=19617,
                             tiled_clip_copies=7.11,
                             source="diffusers 0.42 AutoencoderKLHunyuanVideo() on the meta device (python -m "
                                    "benchmarks.video_vae): FLOPs at 832x480x81, peak live bf16 bytes per pixel at "
                                    "1280x720x33 (framewise decoding, its default); tiled: 2.967 GiB at 1280x720x81")
VIDEO_VAES: dict[str, VideoVae] = {v.diffusers_class: v for v in (WAN_VAE, HUNYUAN_VIDEO_VAE)}
"""A family spec's VAE class (``Vae.diffusers_class``) → its measured 3-D decoder."""


@dataclass(frozen=True)
class Pipeline:
    """What a family's diffusers pipeline loads beside its transformer (from its family spec)."""

    text_encoders: tuple[tuple[str, TextEncoder, int], ...]
    """``(kind, component, tokens it reads per prompt)`` in the order the pipeline encodes."""
    vae: Vae | VideoVae | None = SD_VAE
    dtype: str = "fp16"
    """The dtype the family's pipeline is usually run in (its spec's ``usual_dtype``)."""
    unknown: tuple[str, ...] = ()
    """Encoder kinds of the spec with no dimensions here (not counted; named by ``pfplan memory``)."""


def pipeline_components(spec, latent_channels: int, *, tiny: bool = False) -> Pipeline:
    """The components of a :class:`~profiles.families.spec.FamilySpec`'s pipeline: its text encoders by
    kind and the standard VAE of its latent space; nothing for tiny test presets (random embeddings;
    their tiny VAE is counted by the caller from ``vae_config``)."""
    if tiny:
        return Pipeline((), None)
    encoders, unknown = [], []
    for enc in spec.text_encoders:
        pair = ENCODERS.get(enc.kind)
        if pair is None:
            unknown.append(enc.kind)
        else:
            encoders.append((enc.kind, pair[0] if enc.pooled_only else pair[1], enc.max_tokens))
    channels = spec.vae.latent_channels or latent_channels
    vae = VIDEO_VAES.get(getattr(spec.vae, "diffusers_class", "")) or VAES.get(channels)
    return Pipeline(tuple(encoders), vae, getattr(spec, "usual_dtype", "fp16"), tuple(unknown))


def vae_from_config(config: dict) -> Vae:
    """A :class:`Vae` from an ``AutoencoderKL`` config dict (tiny presets carry one)."""
    return Vae(name="preset vae_config", latent_channels=int(config.get("latent_channels", 4)),
               block_out_channels=tuple(config.get("block_out_channels", (64,))),
               layers_per_block=int(config.get("layers_per_block", 1)),
               in_channels=int(config.get("in_channels", 3)), out_channels=int(config.get("out_channels", 3)),
               use_quant_conv=bool(config.get("use_quant_conv", True)),
               use_post_quant_conv=bool(config.get("use_post_quant_conv", True)),
               mid_block_layers=1, source="the preset's vae_config")
