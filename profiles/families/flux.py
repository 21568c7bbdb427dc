"""FLUX.1: MMDiT double-stream blocks, then single-stream blocks over image + text tokens.

Latents are packed 2×2 into one token (a token is a 2×2 latent patch of ``in_channels / 4``
channels). Parameter counts mirror diffusers' ``FluxTransformer2DModel``; the pipeline
facts are those of ``diffusers.FluxPipeline`` (diffusers 0.42, ``pipelines/flux/pipeline_flux.py``).
"""

from __future__ import annotations

from typing import Any

from profiles.catalog.architecture import Architecture, BlockGroup, lin, require
from profiles.families.blocks import (joint_attention_flops, joint_block_flops, joint_block_params,
                                      timestep_embedding)
from profiles.families.spec import BlockKind, FamilySpec, Guidance, TextEncoder, Tokens, Vae


def build(cfg: dict[str, Any]) -> Architecture:
    heads, d = require(cfg, "num_attention_heads", "flux"), require(cfg, "attention_head_dim", "flux")
    h = heads * d
    cin = cfg.get("in_channels", 64)
    cout = cfg.get("out_channels") or cin
    packed = cfg.get("patch_size", 1)
    single = lin(h, 3 * h) + lin(h, 4 * h) + 3 * lin(h, h) + 2 * d + lin(5 * h, h)
    pooled = cfg.get("pooled_projection_dim", 768)
    guidance = timestep_embedding(h) if cfg.get("guidance_embeds", False) else 0
    embed = timestep_embedding(h) + guidance + lin(pooled, h) + lin(h, h) \
        + lin(cfg.get("joint_attention_dim", 4096), h) + lin(cin, h)
    final = lin(h, 2 * h) + lin(h, packed * packed * cout)
    blocks = (BlockGroup("flux_double_block", require(cfg, "num_layers", "flux"),
                         joint_block_params(h, d, qk_norm=True, last=False)),
              BlockGroup("flux_single_block", require(cfg, "num_single_layers", "flux"), single))
    # 2×2 latent patches are packed into one token of in_channels = 4 × latent channels.
    return Architecture("flux", h, heads, d, 4 * h, 2 * packed, cin // 4, "joint", h, blocks, embed, final)


def single_block_flops(arch: Architecture, n: Tokens) -> int:
    """2(q+tq)·h·(3h+f) + 2(q+tq)·(h+f)·h + 4(q+tq)(k+t)·h."""
    h, f = arch.hidden_size, arch.ffn_inner
    tokens = n.query + n.text_query
    return 2 * tokens * h * (3 * h + f) + 2 * tokens * (h + f) * h + 4 * tokens * (n.kv + n.text) * h


def output_values_per_token(config: dict[str, Any], arch: Architecture) -> int:
    """Tokens are packed 2×2 patches already: the output channels are the values per token."""
    return int(config.get("out_channels") or config.get("in_channels", 64))


def preset_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return dict(text_tokens=512, text_embed_dim=config.get("joint_attention_dim", 4096),
                pooled_embed_dim=config.get("pooled_projection_dim", 768), uses_cfg=False,
                scheduler="FlowMatchEulerDiscreteScheduler", default_steps=28)


SPEC = FamilySpec(
    name="flux",
    patch_embed="rows",  # x_embedder is per token; positions are rotary, applied in the blocks
    diffusers_class="FluxTransformer2DModel",
    pipeline_class="FluxPipeline",
    usual_dtype="bf16",  # FluxPipeline docs load torch.bfloat16 (xDiT's flux_example too)
    build=build,
    blocks=(BlockKind("flux_double_block", joint_block_flops, joint_attention_flops, joint=True,
                      tensor_all_reduces=(2, 2, 0, 0)),
            BlockKind("flux_single_block", single_block_flops, joint_attention_flops, joint=True,
                      tensor_all_reduces=(0, 0, 1, 0))),
    attention="joint",
    # FluxPipeline: a CLIPTextModel whose pooled output alone reaches the transformer
    # (pooled_projection_dim=768), and a T5EncoderModel, max_sequence_length=512.
    text_encoders=(
        TextEncoder("CLIP-L", 768, 77, width_key="pooled_projection_dim", pooled_only=True,
                    source="FluxPipeline: text_encoder (pooler_output), tokenizer_max_length 77; "
                           "FluxTransformer2DModel pooled_projection_dim=768"),
        TextEncoder("T5-XXL", 4096, 512, width_key="joint_attention_dim",
                    source="FluxPipeline: text_encoder_2, max_sequence_length=512; "
                           "FluxTransformer2DModel joint_attention_dim=4096"),
    ),
    # The image processor works in steps of vae_scale_factor * 2 (the 2×2 packing);
    # FluxTransformer2DModel in_channels=64 packed = 16 latent channels.
    vae=Vae(8, 16, source="FluxPipeline.__init__ (8 without a VAE); FluxTransformer2DModel in_channels=64"),
    # true_cfg_scale=1.0: no negative pass by default; guidance_scale=3.5 is embedded (distilled).
    guidance=Guidance(False, 3.5, source="FluxPipeline.__call__ true_cfg_scale=1.0, guidance_scale=3.5"),
    preset_defaults=preset_defaults,
    output_values_per_token=output_values_per_token,
    size_keys=("num_single_layers", "pooled_projection_dim", "joint_attention_dim"),
)
