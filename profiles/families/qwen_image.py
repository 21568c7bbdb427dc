"""Qwen-Image: a 60-block MMDiT whose text stream comes from Qwen2.5-VL, over 2×2-packed latents.

Each ``QwenImageTransformerBlock`` is a double-stream block: image and text each have their
own AdaLN modulation, projections and GELU MLP, and meet in one joint attention over
[text; image] with RMS-normed queries and keys and complex rotary positions (the text's
continue after the image's). Latents of 16 channels are packed 2×2 into 64-channel
tokens as in Flux, so a token is a 2×2 latent patch. Parameter counts mirror diffusers'
``QwenImageTransformer2DModel``; the pipeline facts are those of
``diffusers.QwenImagePipeline`` (diffusers 0.42, ``pipelines/qwenimage/pipeline_qwenimage.py``).
"""

from __future__ import annotations

from typing import Any

from profiles.catalog.architecture import Architecture, BlockGroup, lin, require
from profiles.errors import InputError
from profiles.families.blocks import joint_attention_flops, joint_block_flops, timestep_embedding
from profiles.families.spec import BlockKind, FamilySpec, Guidance, TextEncoder, Vae


def build(cfg: dict[str, Any]) -> Architecture:
    heads, d = require(cfg, "num_attention_heads", "qwen_image"), require(cfg, "attention_head_dim", "qwen_image")
    h = heads * d
    p, cin = cfg.get("patch_size", 2), cfg.get("in_channels", 64)
    cout = cfg.get("out_channels") or 16
    text = cfg.get("joint_attention_dim", 3584)
    for key in ("guidance_embeds", "zero_cond_t", "use_additional_t_cond", "use_layer3d_rope"):
        if cfg.get(key):
            raise InputError(f"Qwen-Image's {key} variant is not modelled", field=f"config.{key}")
    ff = lin(h, 4 * h) + lin(4 * h, h)
    # img_mod and txt_mod (h → 6h), joint attention (q/k/v and out for each stream, RMS norms), two MLPs.
    block = 2 * lin(h, 6 * h) + 8 * lin(h, h) + 4 * d + 2 * ff
    embed = timestep_embedding(h) + text + lin(cin, h) + lin(text, h)
    final = lin(h, 2 * h) + lin(h, p * p * cout)
    blocks = (BlockGroup("qwen_image_block", require(cfg, "num_layers", "qwen_image"), block),)
    # 2×2 latent patches are packed into one token of in_channels = 4 × latent channels.
    return Architecture("qwen_image", h, heads, d, 4 * h, p, cin // (p * p), "joint", h, blocks, embed, final)


def output_values_per_token(config: dict[str, Any], arch: Architecture) -> int:
    return arch.patch_size ** 2 * int(config.get("out_channels") or 16)


def preset_defaults(config: dict[str, Any]) -> dict[str, Any]:
    # Qwen2.5-VL's prompt template is dropped (34 tokens); prompts are short, the pipeline pads none.
    return dict(text_tokens=128, text_embed_dim=config.get("joint_attention_dim", 3584), uses_cfg=True,
                scheduler="FlowMatchEulerDiscreteScheduler", default_steps=50, default_resolution=1328)


SPEC = FamilySpec(
    name="qwen_image",
    patch_embed="rows",  # img_in is per token; positions are rotary, applied in the blocks
    diffusers_class="QwenImageTransformer2DModel",
    pipeline_class="QwenImagePipeline",
    build=build,
    blocks=(BlockKind("qwen_image_block", joint_block_flops, joint_attention_flops, joint=True,
                      tensor_all_reduces=(2, 2, 0, 0)),),
    attention="joint",
    # QwenImagePipeline: one Qwen2_5_VLForConditionalGeneration whose last hidden states
    # (3584 wide) are the prompt tokens, max_sequence_length=512.
    text_encoders=(TextEncoder("Qwen2.5-VL-7B", 3584, 512, width_key="joint_attention_dim",
                               source="QwenImagePipeline: text_encoder Qwen2_5_VLForConditionalGeneration, "
                                      "__call__ max_sequence_length=512; QwenImageTransformer2DModel "
                                      "joint_attention_dim=3584"),),
    # vae_scale_factor = 2 ** len(vae.temperal_downsample) = 8; packed 2×2, in_channels 64 = 16 latent channels.
    vae=Vae(8, 16, source="QwenImagePipeline.__init__ (8 without a VAE); QwenImageTransformer2DModel in_channels=64"),
    # true_cfg_scale=4.0 applies CFG when a negative prompt is given; guidance_scale (embedded) is None.
    guidance=Guidance(True, None, source="QwenImagePipeline.__call__ true_cfg_scale=4.0 (with a negative "
                                         "prompt), guidance_scale=None"),
    preset_defaults=preset_defaults,
    output_values_per_token=output_values_per_token,
    size_keys=("joint_attention_dim",),
)
