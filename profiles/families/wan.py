"""Wan 2.1 / 2.2 text-to-video: self-attention over the clip's tokens, cross-attention to umT5 tokens.

A clip of ``F`` frames becomes ``1 + (F−1)/4`` latent frames (the Wan VAE's temporal
factor 4, spatial 8), cut into ``1×2×2`` patches: 81 frames at 1280×720 are
21 × 45 × 80 = 75 600 tokens. The catalog stacks latent frames along the rows
(:meth:`~profiles.catalog.models.ModelPreset.latent_size`), which is the token order of
the transformer's ``flatten(2)`` over (frames, rows, cols). Each block is AdaLN
(one shared projection plus a per-block table) → self-attention with RMS norm across
heads and 3-D rotary positions → cross-attention to the projected text → GELU MLP.
Wan 2.2 A14B holds two such transformers (high-noise and low-noise experts) and runs one
per step (``ModelPreset.experts``). Parameter counts mirror diffusers'
``WanTransformer3DModel``; the pipeline facts are those of ``diffusers.WanPipeline``
(diffusers 0.42, ``pipelines/wan/pipeline_wan.py``).
"""

from __future__ import annotations

from math import prod
from typing import Any

from profiles.catalog.architecture import Architecture, BlockGroup, lin, require
from profiles.errors import InputError
from profiles.families.blocks import cross_block_flops, cross_text_only_flops, self_attention_kv_flops
from profiles.families.spec import BlockKind, FamilySpec, Guidance, TextEncoder, Vae


def patch_dims(cfg: dict[str, Any]) -> tuple[int, int, int]:
    """(frames, rows, cols) of one patch; the catalog's token rows need a temporal patch of 1."""
    patch = tuple(cfg.get("patch_size", (1, 2, 2)))
    if len(patch) != 3 or patch[0] != 1 or patch[1] != patch[2]:
        raise InputError(f"expected a patch [1, p, p], got {list(patch)}", field="config.patch_size")
    return patch  # type: ignore[return-value]


def build(cfg: dict[str, Any]) -> Architecture:
    heads, d = require(cfg, "num_attention_heads", "wan"), require(cfg, "attention_head_dim", "wan")
    h = heads * d
    patch = patch_dims(cfg)
    cin = cfg.get("in_channels", 16)
    cout = cfg.get("out_channels") or cin
    f = cfg.get("ffn_dim", 13824)
    c, freq = cfg.get("text_dim", 4096), cfg.get("freq_dim", 256)
    if cfg.get("image_dim") is not None or cfg.get("added_kv_proj_dim") is not None:
        raise InputError("Wan image-to-video (image_dim / added_kv_proj_dim) is not modelled", field="config.image_dim")
    # attn1, attn2: to_q/k/v/out and RMS norms of q and k across heads; norm2 (cross_attn_norm);
    # the GELU FeedForward; the block's 6h scale_shift_table.
    norm2 = 2 * h if cfg.get("cross_attn_norm", True) else 0
    block = 2 * (4 * lin(h, h) + 2 * h) + norm2 + lin(h, f) + lin(f, h) + 6 * h
    embed = (cin * prod(patch) * h + h) + (lin(freq, h) + lin(h, h)) + lin(h, 6 * h) + (lin(c, h) + lin(h, h))
    final = lin(h, prod(patch) * cout) + 2 * h
    blocks = (BlockGroup("wan_block", require(cfg, "num_layers", "wan"), block),)
    return Architecture("wan", h, heads, d, f, patch[1], cin, "cross", h, blocks, embed, final)


def output_values_per_token(config: dict[str, Any], arch: Architecture) -> int:
    return prod(patch_dims(config)) * int(config.get("out_channels") or config.get("in_channels", 16))


def preset_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return dict(text_tokens=512, text_embed_dim=config.get("text_dim", 4096), uses_cfg=True,
                scheduler="UniPCMultistepScheduler", default_steps=50, default_frames=81, vae_temporal_factor=4,
                default_resolution=480)


SPEC = FamilySpec(
    name="wan",
    patch_embed="rows",  # patch_embedding is a per-patch conv; positions are rotary, applied in the blocks
    diffusers_class="WanTransformer3DModel",
    pipeline_class="WanPipeline",
    build=build,
    blocks=(BlockKind("wan_block", cross_block_flops, self_attention_kv_flops, cross_text_only_flops,
                      tensor_all_reduces=(3, 0, 0, 4)),),
    attention="cross",
    # WanPipeline: one UMT5EncoderModel (umT5-XXL), max_sequence_length=512, whose 4096-wide
    # tokens the transformer's condition_embedder projects (text_dim=4096).
    text_encoders=(TextEncoder("umT5-XXL", 4096, 512, width_key="text_dim",
                               source="WanPipeline: text_encoder UMT5EncoderModel, __call__ max_sequence_length=512; "
                                      "WanTransformer3DModel text_dim=4096"),),
    # vae_scale_factor_spatial = 2 ** len(vae.temperal_downsample) = 8, temporal 4 (without a VAE);
    # latents have the transformer's in_channels (16, AutoencoderKLWan z_dim=16).
    # decode FLOPs: torch's FlopCounterMode over AutoencoderKLWan() (default = Wan 2.1 VAE) decoding on
    # the meta device, 8.70e6 per output pixel-frame at 9 frames (tests/runtime/test_video_output.py counts it);
    # its memory and its time on the timeline: profiles/costs/components.py WAN_VAE.
    vae=Vae(8, 16, source="WanPipeline.__init__ vae_scale_factor_spatial=8, vae_scale_factor_temporal=4; "
                          "WanTransformer3DModel in_channels=16", decode_flops_per_pixel_frame=8.70e6,
            diffusers_class="AutoencoderKLWan"),
    guidance=Guidance(True, 5.0, source="WanPipeline.__call__ guidance_scale=5.0 (CFG when > 1); "
                                        "Wan 2.2 A14B: guidance_scale_2 for the low-noise expert"),
    preset_defaults=preset_defaults,
    output_values_per_token=output_values_per_token,
    size_keys=("text_dim", "freq_dim", "ffn_dim"),
)
