"""FLUX.2: MMDiT double-stream blocks, then parallel single-stream blocks, no biases, shared modulation.

Unlike FLUX.1, the AdaLN modulations are computed once per step for all blocks
(``double_stream_modulation_img/txt``, ``single_stream_modulation``: model-level
parameters, counted with the embeddings), the MLPs are SwiGLU of ratio 3, every Linear is
bias-free, and a single block fuses Q/K/V and the MLP's input into one projection. The
text stream is Mistral Small 3.1's hidden states of three layers side by side (15 360
wide). Latents of 32 channels are packed 2×2 into 128-channel tokens. Parameter counts
mirror diffusers' ``Flux2Transformer2DModel``; the pipeline facts are those of
``diffusers.Flux2Pipeline`` (diffusers 0.42, ``pipelines/flux2/pipeline_flux2.py``).
"""

from __future__ import annotations

from typing import Any

from profiles.catalog.architecture import Architecture, BlockGroup, require
from profiles.families.spec import BlockKind, FamilySpec, Guidance, TextEncoder, Tokens, Vae


def nb(a: int, b: int) -> int:
    """Parameters of a bias-free ``nn.Linear(a, b)``."""
    return a * b


def build(cfg: dict[str, Any]) -> Architecture:
    heads, d = require(cfg, "num_attention_heads", "flux2"), require(cfg, "attention_head_dim", "flux2")
    h = heads * d
    cin = cfg.get("in_channels", 128)
    cout = cfg.get("out_channels") or cin
    f = int(h * cfg.get("mlp_ratio", 3.0))
    tg = cfg.get("timestep_guidance_channels", 256)
    swiglu = nb(h, 2 * f) + nb(f, h)
    double = 8 * nb(h, h) + 4 * d + 2 * swiglu
    single = nb(h, 3 * h + 2 * f) + 2 * d + nb(h + f, h)
    guidance = 2 if cfg.get("guidance_embeds", True) else 1
    embed = guidance * (nb(tg, h) + nb(h, h)) + 2 * nb(h, 6 * h) + nb(h, 3 * h) + nb(cin, h) \
        + nb(cfg.get("joint_attention_dim", 15360), h)
    final = nb(h, 2 * h) + nb(h, cfg.get("patch_size", 1) ** 2 * cout)
    blocks = (BlockGroup("flux2_double_block", require(cfg, "num_layers", "flux2"), double),
              BlockGroup("flux2_single_block", require(cfg, "num_single_layers", "flux2"), single))
    # 2×2 latent patches are packed into one token of in_channels = 4 × latent channels.
    return Architecture("flux2", h, heads, d, f, 2 * cfg.get("patch_size", 1), cin // 4, "joint", h, blocks,
                        embed, final)


def double_block_flops(arch: Architecture, n: Tokens) -> int:
    """2(q+tq)·4h² projections, attention 4(q+tq)(k+t)·h, SwiGLU MLPs 2(q+tq)·3h·f."""
    h, f, tokens = arch.hidden_size, arch.ffn_inner, n.query + n.text_query
    return 2 * tokens * 4 * h * h + 4 * tokens * (n.kv + n.text) * h + 2 * tokens * 3 * h * f


def single_block_flops(arch: Architecture, n: Tokens) -> int:
    """2(q+tq)·h·(3h+2f) + 2(q+tq)·(h+f)·h + 4(q+tq)(k+t)·h."""
    h, f, tokens = arch.hidden_size, arch.ffn_inner, n.query + n.text_query
    return 2 * tokens * h * (3 * h + 2 * f) + 2 * tokens * (h + f) * h + 4 * tokens * (n.kv + n.text) * h


def attention_flops(arch: Architecture, n: Tokens) -> int:
    return 4 * (n.query + n.text_query) * (n.kv + n.text) * arch.hidden_size


def output_values_per_token(config: dict[str, Any], arch: Architecture) -> int:
    return int(config.get("out_channels") or config.get("in_channels", 128))


def preset_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return dict(text_tokens=512, text_embed_dim=config.get("joint_attention_dim", 15360), uses_cfg=False,
                scheduler="FlowMatchEulerDiscreteScheduler", default_steps=50)


SPEC = FamilySpec(
    name="flux2",
    patch_embed="rows",  # x_embedder is per token; positions are rotary, applied in the blocks
    diffusers_class="Flux2Transformer2DModel",
    pipeline_class="Flux2Pipeline",
    build=build,
    blocks=(BlockKind("flux2_double_block", double_block_flops, attention_flops, joint=True),
            BlockKind("flux2_single_block", single_block_flops, attention_flops, joint=True)),
    attention="joint",
    # Flux2Pipeline: one Mistral3ForConditionalGeneration; the hidden states of layers
    # (10, 20, 30) are stacked in width: 3 × 5120 = joint_attention_dim 15360.
    text_encoders=(TextEncoder("Mistral-Small-3.1-24B", 15360, 512, width_key="joint_attention_dim",
                               source="Flux2Pipeline: text_encoder Mistral3ForConditionalGeneration, "
                                      "hidden_states_layers=(10, 20, 30), __call__ max_sequence_length=512; "
                                      "Flux2Transformer2DModel joint_attention_dim=15360"),),
    vae=Vae(8, 32, source="Flux2Pipeline.__init__ (8 without a VAE); Flux2Transformer2DModel in_channels=128 "
                          "packed 2×2"),
    # guidance_scale=4.0 is embedded (guidance-distilled): no negative pass.
    guidance=Guidance(False, 4.0, embedded=True,
                      source="Flux2Pipeline.__call__ guidance_scale=4.0, embedded (guidance_embeds), no CFG"),
    preset_defaults=preset_defaults,
    output_values_per_token=output_values_per_token,
    size_keys=("num_single_layers", "joint_attention_dim", "timestep_guidance_channels"),
    ratio_keys=("mlp_ratio",),
    runtime_lacks={
        "sequence_attention": "runtime/families/flux2.py has no sequence-parallel processor for its attention yet",
        "patch_kv_attention": "runtime/families/flux2.py has no patch-parallel K/V processor yet",
        "head_sharding": "its single blocks fuse Q/K/V with the MLP input (to_qkv_mlp_proj); the packed split "
                         "is not written",
    },
)
