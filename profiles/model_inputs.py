"""Random but well-formed forward inputs for each family's diffusers transformer.

The profiler times blocks with the exact arguments the family's own ``forward`` hands
them (timestep embeddings, text states, rotary tables, long skips), so it runs the model's
forward once and captures them rather than rebuilding them by hand. That needs inputs of
the right shapes for a token grid of ``rows × cols``; this module makes them, the way each
diffusers pipeline does (Flux packs 2×2 latents and passes position ids; HunyuanDiT's
pipeline computes the 2-D rotary table; PixArt takes empty added conditions).

Only the profiler imports this (torch).
"""

from __future__ import annotations

from typing import Any

from profiles.models import ModelPreset


def forward_inputs(preset: ModelPreset, *, rows: int, cols: int, batch: int, device: str,
                   dtype: Any, seed: int = 0) -> dict[str, Any]:
    """Keyword arguments for ``transformer(**inputs)`` on a ``rows × cols`` token grid.

    Example: pixart-tiny (patch 2) with ``rows=4, cols=16`` gets an 8 × 32 latent, i.e. a
    PipeFusion patch of a quarter of the 16 × 16-token image.
    """
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    arch = preset.arch
    cfg = preset.config

    def randn(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    p = arch.patch_size
    t = preset.text_tokens
    timestep = torch.full((batch,), 500, device=device, dtype=torch.long)
    if preset.family == "pixart":
        # PixArt-α 1024 embeds the image size and aspect ratio (ignored by models without them).
        height, width = rows * p * preset.vae_scale_factor, cols * p * preset.vae_scale_factor
        sizes = {"resolution": torch.tensor([[height, width]] * batch, device=device, dtype=dtype),
                 "aspect_ratio": torch.tensor([[height / width]] * batch, device=device, dtype=dtype)}
        return dict(hidden_states=randn(batch, arch.latent_channels, rows * p, cols * p),
                    encoder_hidden_states=randn(batch, t, preset.text_embed_dim), timestep=timestep,
                    added_cond_kwargs=sizes, return_dict=False)
    if preset.family == "dit":
        labels = torch.zeros((batch,), device=device, dtype=torch.long)
        return dict(hidden_states=randn(batch, arch.latent_channels, rows * p, cols * p), timestep=timestep,
                    class_labels=labels, return_dict=False)
    if preset.family == "sd3":
        return dict(hidden_states=randn(batch, arch.latent_channels, rows * p, cols * p),
                    encoder_hidden_states=randn(batch, t, preset.text_embed_dim),
                    pooled_projections=randn(batch, preset.pooled_embed_dim), timestep=timestep,
                    return_dict=False)
    if preset.family == "flux":
        img_ids = torch.zeros(rows, cols, 3)
        img_ids[..., 1] = torch.arange(rows)[:, None]
        img_ids[..., 2] = torch.arange(cols)[None, :]
        inputs = dict(hidden_states=randn(batch, rows * cols, cfg.get("in_channels", 64)),
                      encoder_hidden_states=randn(batch, t, preset.text_embed_dim),
                      pooled_projections=randn(batch, preset.pooled_embed_dim),
                      timestep=torch.full((batch,), 0.5, device=device, dtype=dtype),
                      img_ids=img_ids.reshape(rows * cols, 3).to(device=device, dtype=dtype),
                      txt_ids=torch.zeros(t, 3, device=device, dtype=dtype), return_dict=False)
        if cfg.get("guidance_embeds", False):
            inputs["guidance"] = torch.full((batch,), 3.5, device=device, dtype=dtype)
        return inputs
    if preset.family == "hunyuan":
        from diffusers.models.embeddings import get_2d_rotary_pos_embed

        text_len, text_len_t5 = cfg.get("text_len", 77), cfg.get("text_len_t5", 256)
        rotary = get_2d_rotary_pos_embed(arch.head_dim, ((0, 0), (rows, cols)), (rows, cols), device=device,
                                         output_type="pt")
        inputs = dict(hidden_states=randn(batch, arch.latent_channels, rows * p, cols * p),
                      timestep=torch.full((batch,), 500.0, device=device, dtype=dtype),
                      encoder_hidden_states=randn(batch, text_len, cfg.get("cross_attention_dim", 1024)),
                      text_embedding_mask=torch.ones(batch, text_len, device=device, dtype=torch.long),
                      encoder_hidden_states_t5=randn(batch, text_len_t5, cfg.get("cross_attention_dim_t5", 2048)),
                      text_embedding_mask_t5=torch.ones(batch, text_len_t5, device=device, dtype=torch.long),
                      image_rotary_emb=tuple(r.to(dtype=dtype) for r in rotary), return_dict=False)
        if cfg.get("use_style_cond_and_image_meta_size", True):
            inputs["image_meta_size"] = torch.tensor([[rows * p * 8, cols * p * 8, rows * p * 8, cols * p * 8, 0, 0]] * batch,
                                                     device=device, dtype=dtype)
            inputs["style"] = torch.zeros(batch, device=device, dtype=torch.long)
        return inputs
    raise ValueError(f"no inputs for family {preset.family!r}")


def single_block_overrides(preset: ModelPreset) -> dict[str, Any]:
    """Config overrides that keep one block of every kind (the profiler builds only these).

    HunyuanDiT gives blocks with index > layers // 2 a long skip fed by block
    ``index < layers // 2 - 1``, so 4 layers are the fewest with a skip block (three plain
    blocks, one skip); SD3's last block differs (context_pre_only), so it keeps 2.
    """
    family = preset.family
    if family == "flux":
        return {"num_layers": 1, "num_single_layers": 1}
    if family == "sd3":
        return {"num_layers": 2}
    if family == "hunyuan":
        return {"num_layers": 4}
    return {"num_layers": 1}


def output_module(preset: ModelPreset, model: Any) -> Any:
    """The module whose end marks the end of the final layer.

    DiT's forward unpatchifies assuming a square token grid, which a patch is not; its final
    layer's work ends with ``proj_out_2`` (the reshape after it is free), so timing stops there
    and the reshape's error on a non-square patch is expected. Other families: the model.
    """
    return model.proj_out_2 if preset.family == "dit" else model
