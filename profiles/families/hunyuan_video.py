"""HunyuanVideo: 20 dual-stream blocks, then 40 single-stream blocks over [video; text] tokens.

The Llama prompt tokens first pass a small token refiner (two self-attention blocks
conditioned on the timestep and the mean prompt token); CLIP-L's pooled output joins the
timestep and the embedded guidance. A clip of ``F`` frames is ``1 + (F−1)/4`` latent frames
(VAE factors 4 in time, 8 in space), cut into ``1×2×2`` patches: 129 frames at 1280×720 are
33 × 45 × 80 = 118 800 tokens, stacked frame-major along the rows as the catalog does.
Parameter counts mirror diffusers' ``HunyuanVideoTransformer3DModel``; the pipeline facts
are those of ``diffusers.HunyuanVideoPipeline`` (diffusers 0.42,
``pipelines/hunyuan_video/pipeline_hunyuan_video.py``).
"""

from __future__ import annotations

from typing import Any

from profiles.catalog.architecture import Architecture, BlockGroup, lin, require
from profiles.errors import InputError
from profiles.families.blocks import ada_zero, joint_attention_flops, joint_block_flops, timestep_embedding
from profiles.families.spec import BlockKind, FamilySpec, Guidance, TextEncoder, Tokens, Vae


def build(cfg: dict[str, Any]) -> Architecture:
    heads = require(cfg, "num_attention_heads", "hunyuan_video")
    d = require(cfg, "attention_head_dim", "hunyuan_video")
    h = heads * d
    p, pt = cfg.get("patch_size", 2), cfg.get("patch_size_t", 1)
    if pt != 1:
        raise InputError(f"expected patch_size_t 1 (frames are token rows), got {pt}", field="config.patch_size_t")
    if cfg.get("image_condition_type") is not None:
        raise InputError("HunyuanVideo image-to-video is not modelled", field="config.image_condition_type")
    cin = cfg.get("in_channels", 16)
    cout = cfg.get("out_channels") or cin
    f = int(h * cfg.get("mlp_ratio", 4.0))
    c, pooled = cfg.get("text_embed_dim", 4096), cfg.get("pooled_projection_dim", 768)
    ff = lin(h, f) + lin(f, h)
    double = 2 * ada_zero(h) + 8 * lin(h, h) + 4 * d + 2 * ff
    single = 3 * lin(h, h) + 2 * d + lin(h, 3 * h) + lin(h, f) + lin(h + f, h)
    refiner_block = 4 * h + 4 * lin(h, h) + lin(h, 4 * h) + lin(4 * h, h) + lin(h, 2 * h)
    refiner = timestep_embedding(h) + lin(c, h) + lin(h, h) + lin(c, h) \
        + cfg.get("num_refiner_layers", 2) * refiner_block
    guidance = timestep_embedding(h) if cfg.get("guidance_embeds", True) else 0
    embed = (cin * pt * p * p * h + h) + refiner + timestep_embedding(h) + lin(pooled, h) + lin(h, h) + guidance
    final = lin(h, 2 * h) + lin(h, pt * p * p * cout)
    blocks = (BlockGroup("hunyuan_video_double_block", require(cfg, "num_layers", "hunyuan_video"), double),
              BlockGroup("hunyuan_video_single_block", require(cfg, "num_single_layers", "hunyuan_video"), single))
    return Architecture("hunyuan_video", h, heads, d, f, p, cin, "joint", h, blocks, embed, final)


def single_block_flops(arch: Architecture, n: Tokens) -> int:
    """2(q+tq)·h·(3h+f) + 2(q+tq)·(h+f)·h + 4(q+tq)(k+t)·h (as Flux's single block)."""
    h, f = arch.hidden_size, arch.ffn_inner
    tokens = n.query + n.text_query
    return 2 * tokens * h * (3 * h + f) + 2 * tokens * (h + f) * h + 4 * tokens * (n.kv + n.text) * h


def preset_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return dict(text_tokens=256, text_embed_dim=config.get("text_embed_dim", 4096),
                pooled_embed_dim=config.get("pooled_projection_dim", 768), uses_cfg=False,
                scheduler="FlowMatchEulerDiscreteScheduler", default_steps=50, default_frames=129,
                vae_temporal_factor=4, default_resolution=720)


SPEC = FamilySpec(
    name="hunyuan_video",
    patch_embed="rows",  # x_embedder is a per-patch projection; positions are rotary, applied in the blocks
    diffusers_class="HunyuanVideoTransformer3DModel",
    pipeline_class="HunyuanVideoPipeline",
    build=build,
    blocks=(BlockKind("hunyuan_video_double_block", joint_block_flops, joint_attention_flops, joint=True,
                      tensor_all_reduces=(2, 2, 0, 0)),
            BlockKind("hunyuan_video_single_block", single_block_flops, joint_attention_flops, joint=True,
                      tensor_all_reduces=(0, 0, 1, 0))),
    attention="joint",
    # HunyuanVideoPipeline: a LlamaModel (llava-llama-3-8b) whose hidden states, after the prompt
    # template is cropped, are 256 tokens of 4096 (max_sequence_length=256), and a CLIPTextModel
    # whose pooled output (768) joins the timestep.
    text_encoders=(
        TextEncoder("Llama-3-8B (llava)", 4096, 256, width_key="text_embed_dim",
                    source="HunyuanVideoPipeline: text_encoder LlamaModel, __call__ max_sequence_length=256; "
                           "HunyuanVideoTransformer3DModel text_embed_dim=4096"),
        TextEncoder("CLIP-L", 768, 77, width_key="pooled_projection_dim", pooled_only=True,
                    source="HunyuanVideoPipeline: text_encoder_2 CLIPTextModel (pooler_output), max_length 77; "
                           "HunyuanVideoTransformer3DModel pooled_projection_dim=768"),
    ),
    vae=Vae(8, 16, source="HunyuanVideoPipeline.__init__ vae_scale_factor_spatial=8, temporal=4; "
                          "HunyuanVideoTransformer3DModel in_channels=16", decode_flops_per_pixel_frame=2.44e7,
            diffusers_class="AutoencoderKLHunyuanVideo"),
    # true_cfg_scale=1.0: no negative pass; guidance_scale=6.0 is embedded (guidance_embeds).
    guidance=Guidance(False, 6.0, embedded=True,
                      source="HunyuanVideoPipeline.__call__ true_cfg_scale=1.0, guidance_scale=6.0 (embedded)"),
    preset_defaults=preset_defaults,
    size_keys=("num_single_layers", "num_refiner_layers", "patch_size_t", "text_embed_dim", "pooled_projection_dim"),
    ratio_keys=("mlp_ratio",),
    runtime_lacks={
        "sequence_attention": "runtime/families/hunyuan_video.py has no sequence-parallel processor for its "
                              "[video; text] attention yet",
        "patch_kv_attention": "runtime/families/hunyuan_video.py has no patch-parallel K/V processor yet",
    },
)
