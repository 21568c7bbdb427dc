"""PixArt-α / Σ: DiT blocks with self-attention, cross-attention to T5 tokens, and AdaLN-single.

Parameter counts mirror diffusers' ``PixArtTransformer2DModel``; the pipeline facts are
those of ``diffusers.PixArtAlphaPipeline`` (diffusers 0.42,
``pipelines/pixart_alpha/pipeline_pixart_alpha.py``).
"""

from __future__ import annotations

from typing import Any

from profiles.catalog.architecture import Architecture, BlockGroup, lin, require
from profiles.families.blocks import cross_block_flops, cross_text_only_flops, self_attention_kv_flops
from profiles.families.spec import BlockKind, FamilySpec, Guidance, TextEncoder, Vae


def build(cfg: dict[str, Any]) -> Architecture:
    heads, d = require(cfg, "num_attention_heads", "pixart"), require(cfg, "attention_head_dim", "pixart")
    h = heads * d
    p, cin = cfg.get("patch_size", 2), cfg.get("in_channels", 4)
    cout = cfg.get("out_channels") or cin
    c = cfg.get("cross_attention_dim") or h
    caption = cfg.get("caption_channels", 4096)
    f = 4 * h
    block = 4 * lin(h, h) + (lin(h, h) + 2 * lin(c, h) + lin(h, h)) + lin(h, f) + lin(f, h) + 6 * h
    embed = (cin * p * p * h + h) + (lin(256, h) + lin(h, h) + lin(h, 6 * h)) + lin(caption, h) + lin(h, h)
    extra = cfg.get("use_additional_conditions")
    if extra or (extra is None and cfg.get("sample_size") == 128):
        embed += 2 * (lin(256, h // 3) + lin(h // 3, h // 3))
    final = lin(h, p * p * cout) + 2 * h
    return Architecture("pixart", h, heads, d, f, p, cin, "cross", c,
                        (BlockGroup("pixart_block", require(cfg, "num_layers", "pixart"), block),),
                        embed, final)


def preset_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return dict(text_tokens=120, text_embed_dim=config.get("caption_channels", 4096), uses_cfg=True)


SPEC = FamilySpec(
    name="pixart",
    diffusers_class="PixArtTransformer2DModel",
    pipeline_class="PixArtAlphaPipeline",
    build=build,
    blocks=(BlockKind("pixart_block", cross_block_flops, self_attention_kv_flops, cross_text_only_flops,
                      tensor_all_reduces=(3, 0, 0, 0)),),
    attention="cross",
    # PixArtAlphaPipeline: one T5EncoderModel, max_sequence_length=120; its width is the
    # transformer's caption_channels, which PixArtTransformer2DModel leaves None by default.
    text_encoders=(TextEncoder("T5-XXL", None, 120, width_key="caption_channels",
                               source="PixArtAlphaPipeline: T5EncoderModel; __call__ max_sequence_length=120"),),
    # vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1), 8 without a VAE;
    # latents have the transformer's in_channels (PixArtTransformer2DModel default 4).
    vae=Vae(8, 4, source="PixArtAlphaPipeline.__init__; PixArtTransformer2DModel in_channels=4"),
    guidance=Guidance(True, 4.5, source="PixArtAlphaPipeline.__call__ guidance_scale=4.5"),
    preset_defaults=preset_defaults,
    size_keys=("cross_attention_dim", "caption_channels"),
)
