"""DiT (Peebles & Xie): class-conditioned self-attention blocks with AdaLN-Zero, no text.

Parameter counts mirror diffusers' ``DiTTransformer2DModel``; the pipeline facts are those
of ``diffusers.DiTPipeline`` (diffusers 0.42, ``pipelines/dit/pipeline_dit.py``).
"""

from __future__ import annotations

from typing import Any

from profiles.catalog.architecture import Architecture, BlockGroup, lin, require
from profiles.families.blocks import ada_zero, self_attention_kv_flops, timestep_embedding
from profiles.families.spec import BlockKind, FamilySpec, Guidance, Tokens, Vae


def build(cfg: dict[str, Any]) -> Architecture:
    heads, d = require(cfg, "num_attention_heads", "dit"), require(cfg, "attention_head_dim", "dit")
    h = heads * d
    p, cin = cfg.get("patch_size", 2), cfg.get("in_channels", 4)
    cout = cfg.get("out_channels") or cin
    classes = cfg.get("num_embeds_ada_norm", 1000)
    # diffusers gives every block its own class + timestep embedding (AdaLayerNormZero);
    # the original DiT shares one, which is what published parameter counts count.
    embedding = (classes + 1) * h + timestep_embedding(h)
    block = embedding + ada_zero(h) + 4 * lin(h, h) + lin(h, 4 * h) + lin(4 * h, h)
    layers = require(cfg, "num_layers", "dit")
    embed = cin * p * p * h + h
    final = lin(h, 2 * h) + lin(h, p * p * cout)
    return Architecture("dit", h, heads, d, 4 * h, p, cin, "self", 0,
                        (BlockGroup("dit_block", layers, block),), embed, final,
                        duplicated_params=(layers - 1) * embedding)


def block_flops(arch: Architecture, n: Tokens) -> int:
    """2q·4h² + 4q·k·h + 2q·2h·f."""
    h, f, q = arch.hidden_size, arch.ffn_inner, n.query
    return 2 * q * 4 * h * h + 4 * q * n.kv * h + 2 * q * 2 * h * f


def preset_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return dict(text_tokens=0, text_embed_dim=0, uses_cfg=True, scheduler="DDIMScheduler", default_resolution=256)


SPEC = FamilySpec(
    name="dit",
    diffusers_class="DiTTransformer2DModel",
    pipeline_class="DiTPipeline",
    build=build,
    blocks=(BlockKind("dit_block", block_flops, self_attention_kv_flops),),
    attention="self",
    text_encoders=(),  # DiTPipeline takes ImageNet class labels, no prompt
    # DiTPipeline computes no scale factor: the latent side is transformer.config.sample_size
    # and the image is whatever the AutoencoderKL decodes; latents have the transformer's
    # in_channels (DiTTransformer2DModel default 4).
    vae=Vae(None, 4, source="DiTPipeline.__call__; DiTTransformer2DModel in_channels=4"),
    # guidance_scale > 1 doubles the latents (torch.cat([latents] * 2)).
    guidance=Guidance(True, 4.0, source="DiTPipeline.__call__ guidance_scale=4.0"),
    preset_defaults=preset_defaults,
    size_keys=("num_embeds_ada_norm",),
    duplicated_params_note="diffusers stores the class/timestep embedding in every block",
)
