"""HunyuanDiT: self- and cross-attention blocks with QK norm and U-Net-like long skips.

Blocks past the middle read the output of their mirror block (index ``L−1−i``) through a
``skip_linear``. Parameter counts mirror diffusers' ``HunyuanDiT2DModel``; the pipeline
facts are those of ``diffusers.HunyuanDiTPipeline`` (diffusers 0.42,
``pipelines/hunyuandit/pipeline_hunyuandit.py``).
"""

from __future__ import annotations

from typing import Any

from profiles.catalog.architecture import Architecture, BlockGroup, lin, require
from profiles.errors import InputError
from profiles.families.blocks import (cross_block_flops, cross_text_only_flops, self_attention_kv_flops,
                                      timestep_embedding)
from profiles.families.spec import BlockKind, FamilySpec, Guidance, TextEncoder, Tokens, Vae


def build(cfg: dict[str, Any]) -> Architecture:
    heads, d = require(cfg, "num_attention_heads", "hunyuan"), require(cfg, "attention_head_dim", "hunyuan")
    h = cfg.get("hidden_size") or heads * d
    if h != heads * d:
        raise InputError(f"hidden_size({h}) != heads({heads}) × head dim({d})", field="config.hidden_size")
    p, cin = cfg.get("patch_size", 2), cfg.get("in_channels", 4)
    cout = output_channels(cfg)
    c, t5 = cfg.get("cross_attention_dim", 1024), cfg.get("cross_attention_dim_t5", 2048)
    f = int(h * cfg.get("mlp_ratio", 4.0))
    layers = require(cfg, "num_layers", "hunyuan")
    block = (lin(h, h) + 2 * h) + 4 * lin(h, h) + 4 * d + 2 * h \
        + (2 * lin(h, h) + 2 * lin(c, h) + 4 * d) + 2 * h + lin(h, f) + lin(f, h)
    skip = 2 * (2 * h) + lin(2 * h, h)
    text_len, text_len_t5 = cfg.get("text_len", 77), cfg.get("text_len_t5", 256)
    style = cfg.get("use_style_cond_and_image_meta_size", True)
    extra_in = 256 * 6 + h + cfg.get("pooled_projection_dim", 1024) if style else cfg.get("pooled_projection_dim", 1024)
    pooler = (text_len_t5 + 1) * t5 + 3 * lin(t5, t5) + lin(t5, cfg.get("pooled_projection_dim", 1024))
    embed = lin(t5, 4 * t5) + lin(4 * t5, c) + (text_len + text_len_t5) * c + (cin * p * p * h + h) \
        + timestep_embedding(h) + pooler + lin(extra_in, 4 * h) + lin(4 * h, h) + (h if style else 0)
    final = lin(h, 2 * h) + lin(h, p * p * cout)
    plain = layers // 2 + 1  # diffusers: blocks with index > layers // 2 take a long skip
    blocks = (BlockGroup("hunyuan_block", plain, block),
              BlockGroup("hunyuan_skip_block", layers - plain, block + skip))
    return Architecture("hunyuan", h, heads, d, f, p, cin, "cross", c, blocks, embed, final)


def output_channels(cfg: dict[str, Any]) -> int:
    """Twice the input channels under a learned σ (the default), else the input channels."""
    cin = cfg.get("in_channels", 4)
    return 2 * cin if cfg.get("learn_sigma", True) else cin


def skip_block_flops(arch: Architecture, n: Tokens) -> int:
    """As the plain block, plus the skip_linear(2h → h): 2q·2h·h."""
    h = arch.hidden_size
    return cross_block_flops(arch, n) + 2 * n.query * 2 * h * h


def output_values_per_token(config: dict[str, Any], arch: Architecture) -> int:
    return arch.patch_size ** 2 * output_channels(config)


def preset_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return dict(text_tokens=config.get("text_len", 77) + config.get("text_len_t5", 256),
                text_embed_dim=config.get("cross_attention_dim", 1024), uses_cfg=True, scheduler="DDPMScheduler")


SPEC = FamilySpec(
    name="hunyuan",
    diffusers_class="HunyuanDiT2DModel",
    pipeline_class="HunyuanDiTPipeline",
    build=build,
    blocks=(BlockKind("hunyuan_block", cross_block_flops, self_attention_kv_flops, cross_text_only_flops,
                      tensor_all_reduces=(3, 0, 0, 0)),
            BlockKind("hunyuan_skip_block", skip_block_flops, self_attention_kv_flops, cross_text_only_flops,
                      long_skip=True, tensor_all_reduces=(3, 0, 0, 0))),
    attention="cross",
    # HunyuanDiTPipeline: a BertModel (77 tokens) and a T5EncoderModel (mT5, 256 tokens),
    # max_length 77 and 256 in encode_prompt; widths are HunyuanDiT2DModel's
    # cross_attention_dim=1024 and cross_attention_dim_t5=2048, lengths its text_len / text_len_t5.
    text_encoders=(
        TextEncoder("BERT", 1024, 77, width_key="cross_attention_dim",
                    source="HunyuanDiTPipeline.encode_prompt max_length=77; HunyuanDiT2DModel cross_attention_dim=1024"),
        TextEncoder("mT5", 2048, 256, width_key="cross_attention_dim_t5",
                    source="HunyuanDiTPipeline.encode_prompt max_length=256; "
                           "HunyuanDiT2DModel cross_attention_dim_t5=2048"),
    ),
    # latents have transformer.config.in_channels, for which HunyuanDiT2DModel has no default.
    vae=Vae(8, None, source="HunyuanDiTPipeline.__init__ (8 without a VAE); num_channels_latents = in_channels"),
    guidance=Guidance(True, 5.0, source="HunyuanDiTPipeline.__call__ guidance_scale=5.0 (CFG when > 1)"),
    preset_defaults=preset_defaults,
    output_values_per_token=output_values_per_token,
    size_keys=("cross_attention_dim", "pooled_projection_dim", "hidden_size", "text_len", "text_len_t5",
               "cross_attention_dim_t5"),
    ratio_keys=("mlp_ratio",),
)
