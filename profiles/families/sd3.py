"""Stable Diffusion 3: MMDiT joint blocks (image and text streams share one attention).

The last block is ``context_pre_only``: its text stream has no output projection and no
MLP. Parameter counts mirror diffusers' ``SD3Transformer2DModel``; the pipeline facts are
those of ``diffusers.StableDiffusion3Pipeline`` (diffusers 0.42,
``pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py``).
"""

from __future__ import annotations

from typing import Any

from profiles.catalog.architecture import Architecture, BlockGroup, lin, require
from profiles.errors import InputError
from profiles.families.blocks import (joint_attention_flops, joint_block_flops, joint_block_params,
                                      timestep_embedding)
from profiles.families.spec import BlockKind, FamilySpec, Guidance, TextEncoder, Tokens, Vae


def build(cfg: dict[str, Any]) -> Architecture:
    heads, d = require(cfg, "num_attention_heads", "sd3"), require(cfg, "attention_head_dim", "sd3")
    h = heads * d
    layers = require(cfg, "num_layers", "sd3")
    p, cin = cfg.get("patch_size", 2), cfg.get("in_channels", 16)
    cout = cfg.get("out_channels") or cin
    qk = cfg.get("qk_norm") is not None
    if cfg.get("dual_attention_layers"):
        raise InputError("SD3.5 dual-attention layers are not modelled", field="config.dual_attention_layers")
    caption_dim = cfg.get("caption_projection_dim", h)
    embed = (cin * p * p * h + h) + timestep_embedding(h) + lin(cfg.get("pooled_projection_dim", 2048), h) \
        + lin(h, h) + lin(cfg.get("joint_attention_dim", 4096), caption_dim)
    final = lin(h, 2 * h) + lin(h, p * p * cout)
    blocks = (BlockGroup("sd3_joint_block", layers - 1, joint_block_params(h, d, qk_norm=qk, last=False)),
              BlockGroup("sd3_joint_block_last", 1, joint_block_params(h, d, qk_norm=qk, last=True)))
    return Architecture("sd3", h, heads, d, 4 * h, p, cin, "joint", caption_dim, blocks, embed, final)


def last_block_flops(arch: Architecture, n: Tokens) -> int:
    """As the joint block, but the text stream has no output projection and no MLP:
    2q·4h² + 2tq·3h² + 4(q+tq)(k+t)·h + 2q·2h·f."""
    h, f, q, tq = arch.hidden_size, arch.ffn_inner, n.query, n.text_query
    return 2 * q * 4 * h * h + 2 * tq * 3 * h * h + 4 * (q + tq) * (n.kv + n.text) * h + 2 * q * 2 * h * f


def preset_defaults(config: dict[str, Any]) -> dict[str, Any]:
    # 77 CLIP tokens (CLIP-L and CLIP-G side by side in width) + 256 T5 tokens
    return dict(text_tokens=333, text_embed_dim=config.get("joint_attention_dim", 4096),
                pooled_embed_dim=config.get("pooled_projection_dim", 2048), uses_cfg=True,
                scheduler="FlowMatchEulerDiscreteScheduler", default_steps=28)


SPEC = FamilySpec(
    name="sd3",
    diffusers_class="SD3Transformer2DModel",
    pipeline_class="StableDiffusion3Pipeline",
    build=build,
    blocks=(BlockKind("sd3_joint_block", joint_block_flops, joint_attention_flops, joint=True,
                      tensor_all_reduces=(2, 2, 0, 0)),
            BlockKind("sd3_joint_block_last", last_block_flops, joint_attention_flops, joint=True,
                      tensor_all_reduces=(2, 0, 0, 0))),
    attention="joint",
    # Two CLIPTextModelWithProjection (their 77-token embeddings concatenated in width and
    # zero-padded to the T5 width, their pooled outputs concatenated: pooled_projection_dim
    # 2048) and a T5EncoderModel, max_sequence_length=256, whose tokens follow the CLIP ones.
    # diffusers' code does not state the two CLIP widths on their own.
    text_encoders=(
        TextEncoder("CLIP-L", None, 77, source="StableDiffusion3Pipeline: text_encoder, tokenizer_max_length 77"),
        TextEncoder("CLIP-G", None, 77, source="StableDiffusion3Pipeline: text_encoder_2, tokenizer_max_length 77"),
        TextEncoder("T5-XXL", 4096, 256, width_key="joint_attention_dim",
                    source="StableDiffusion3Pipeline: text_encoder_3, max_sequence_length=256; "
                           "SD3Transformer2DModel joint_attention_dim=4096"),
    ),
    vae=Vae(8, 16, source="StableDiffusion3Pipeline.__init__ (8 without a VAE); SD3Transformer2DModel in_channels=16"),
    guidance=Guidance(True, 7.0, source="StableDiffusion3Pipeline.__call__ guidance_scale=7.0 (CFG when > 1)"),
    preset_defaults=preset_defaults,
    size_keys=("pooled_projection_dim", "joint_attention_dim", "caption_projection_dim"),
)
