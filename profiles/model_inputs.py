"""Keyword arguments of each family's diffusers transformer, built once for profiler and runtime.

Each family's ``forward`` wants different inputs besides the latent (PixArt: caption
embeddings and, for PixArt-α 1024, the image size and aspect ratio; SD3: pooled
projections; Flux: packed latents, ``txt_ids``/``img_ids`` and a guidance value; DiT: class
labels; HunyuanDiT: two text encoders, masks, the pipeline's cropped 2-D rotary table and,
for v1.1, the image-size/style conditioning). The profiler runs the model's forward on a
patch of ``rows × cols`` tokens with random inputs (:func:`forward_inputs`); the runtime
runs it with seeded or encoded prompts (``runtime.model_inputs``) and rebuilds the same
conditioning in its staged adapter. Both use the helpers here, so they cannot disagree.

Only torch code imports this (the profiler and the runtime); the runtime may import it,
never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiles.models import ModelPreset

FLUX_GUIDANCE = 3.5
"""Flux's distilled guidance value (FLUX.1-dev's pipeline default)."""
PROFILE_TIMESTEP = 500
"""The timestep the profiler's forward uses (0..1000 scale; timing does not depend on it)."""


@dataclass
class Branch:
    """One prompt's conditioning, batch first (None where the family has no such input)."""

    prompt_embeds: Any = None
    prompt_mask: Any = None
    pooled_embeds: Any = None
    prompt_embeds_2: Any = None
    prompt_mask_2: Any = None
    class_label: Any = None


def random_branch(preset: ModelPreset, gen: Any, *, null: bool) -> Branch:
    """Seeded stand-in embeddings (batch 1) with the shapes the family's text encoders produce."""
    import torch

    cfg = preset.config
    b = Branch()
    if preset.family == "dit":
        classes = int(cfg.get("num_embeds_ada_norm", 1000))
        label = classes if null else int(torch.randint(0, classes, (1,), generator=gen))
        b.class_label = torch.tensor([label])
        return b
    if preset.family == "hunyuan":
        t1, t2 = int(cfg.get("text_len", 77)), int(cfg.get("text_len_t5", 256))
        b.prompt_embeds = torch.randn(1, t1, int(cfg["cross_attention_dim"]), generator=gen)
        b.prompt_mask = torch.ones(1, t1, dtype=torch.long)
        b.prompt_embeds_2 = torch.randn(1, t2, int(cfg["cross_attention_dim_t5"]), generator=gen)
        b.prompt_mask_2 = torch.ones(1, t2, dtype=torch.long)
        return b
    b.prompt_embeds = torch.randn(1, preset.text_tokens, preset.text_embed_dim, generator=gen)
    if preset.pooled_embed_dim:
        b.pooled_embeds = torch.randn(1, preset.pooled_embed_dim, generator=gen)
    if preset.family == "pixart":
        b.prompt_mask = torch.ones(1, preset.text_tokens, dtype=torch.long)
    return b


def pack_flux(latent: Any) -> Any:
    """(B, C, H, W) → (B, H/2·W/2, 4C): Flux's 2×2 packing, row-major over token rows."""
    b, c, h, w = latent.shape
    return latent.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_flux(tokens: Any, rows: int, cols: int) -> Any:
    """Inverse of :func:`pack_flux` for a grid of ``rows × cols`` tokens."""
    b, _, ch = tokens.shape
    c = ch // 4
    return tokens.view(b, rows, cols, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, rows * 2, cols * 2)


def flux_image_ids(rows: int, cols: int) -> Any:
    """Flux's (row, col) position ids of a ``rows × cols`` token grid, row-major (float32)."""
    import torch

    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3)


def hunyuan_rotary(preset: ModelPreset, rows: int, cols: int) -> tuple[Any, Any]:
    """HunyuanDiT's 2-D rotary table, cropped to the grid the way its pipeline does (on CPU)."""
    from diffusers.models.embeddings import get_2d_rotary_pos_embed
    from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import get_resize_crop_region_for_grid

    base = 512 // 8 // int(preset.config.get("patch_size", preset.arch.patch_size))
    crops = get_resize_crop_region_for_grid((rows, cols), base)
    return get_2d_rotary_pos_embed(preset.arch.head_dim, crops, (rows, cols), output_type="pt")


def image_size_px(preset: ModelPreset, latent_rows: int, latent_cols: int) -> tuple[int, int]:
    """Pixel height and width of a latent of ``latent_rows × latent_cols``."""
    return latent_rows * preset.vae_scale_factor, latent_cols * preset.vae_scale_factor


def pixart_added_conditions(preset: ModelPreset, height_px: int, width_px: int, batch: int, device: Any,
                            dtype: Any) -> dict[str, Any]:
    """PixArt's ``added_cond_kwargs``: the image size and aspect ratio, as its pipeline passes them.

    PixArt-α 1024 (``use_additional_conditions``) embeds them; other checkpoints ignore them,
    so they are always given (a None here crashes the models that use them).
    """
    import torch

    return {"resolution": torch.tensor([[height_px, width_px]] * batch, device=device, dtype=dtype),
            "aspect_ratio": torch.tensor([[height_px / width_px]] * batch, device=device, dtype=dtype)}


def hunyuan_meta(preset: ModelPreset, height_px: int, width_px: int, batch: int, device: Any,
                 dtype: Any) -> tuple[Any, Any]:
    """HunyuanDiT v1.1's ``image_meta_size`` and ``style`` (both None when the model has no such input).

    Its pipeline passes original size + target size + crop top-left, in pixels, and style 0.
    """
    import torch

    if not preset.config.get("use_style_cond_and_image_meta_size", True):
        return None, None
    meta = torch.tensor([[height_px, width_px, height_px, width_px, 0, 0]] * batch, device=device, dtype=dtype)
    return meta, torch.zeros(batch, device=device, dtype=torch.long)


def model_timestep(preset: ModelPreset, t: Any, batch: int, dtype: Any) -> Any:
    """The timestep the family's forward expects (Flux: t/1000; HunyuanDiT and SD3: float)."""
    t = t.reshape(()).expand(batch)
    if preset.family == "flux":
        return t.to(dtype) / 1000
    if preset.family in ("hunyuan", "sd3"):
        return t.to(dtype)
    return t


def transformer_kwargs(preset: ModelPreset, latent: Any, t: Any, branch: Branch) -> dict[str, Any]:
    """Keyword arguments of the whole transformer's forward for a (B, C, H, W) latent at timestep ``t``.

    ``branch`` holds batch-``B`` conditioning; it is moved to the latent's device and dtype.
    """
    import torch

    batch, _, h, w = latent.shape
    p = preset.arch.patch_size
    dtype, dev = latent.dtype, latent.device
    cfg = preset.config

    def emb(x: Any) -> Any:
        return x.to(device=dev, dtype=dtype)

    def mask(x: Any) -> Any:
        return None if x is None else x.to(device=dev)

    kw: dict[str, Any] = {"timestep": model_timestep(preset, t.to(dev), batch, dtype), "return_dict": False}
    fam = preset.family
    height_px, width_px = image_size_px(preset, h, w)
    if fam == "flux":
        kw.update(hidden_states=pack_flux(latent), encoder_hidden_states=emb(branch.prompt_embeds),
                  pooled_projections=emb(branch.pooled_embeds),
                  txt_ids=torch.zeros(branch.prompt_embeds.shape[1], 3, device=dev),
                  img_ids=flux_image_ids(h // p, w // p).to(dev))
        if cfg.get("guidance_embeds", False):
            kw["guidance"] = torch.full((batch,), FLUX_GUIDANCE, dtype=dtype, device=dev)
        return kw
    kw["hidden_states"] = latent
    if fam == "dit":
        kw["class_labels"] = branch.class_label.to(dev)
    elif fam == "pixart":
        kw.update(encoder_hidden_states=emb(branch.prompt_embeds), encoder_attention_mask=mask(branch.prompt_mask),
                  added_cond_kwargs=pixart_added_conditions(preset, height_px, width_px, batch, dev, dtype))
    elif fam == "sd3":
        kw.update(encoder_hidden_states=emb(branch.prompt_embeds), pooled_projections=emb(branch.pooled_embeds))
    elif fam == "hunyuan":
        meta, style = hunyuan_meta(preset, height_px, width_px, batch, dev, dtype)
        kw.update(encoder_hidden_states=emb(branch.prompt_embeds), text_embedding_mask=mask(branch.prompt_mask),
                  encoder_hidden_states_t5=emb(branch.prompt_embeds_2),
                  text_embedding_mask_t5=mask(branch.prompt_mask_2),
                  image_rotary_emb=tuple(x.to(dev) for x in hunyuan_rotary(preset, h // p, w // p)))
        if meta is not None:
            kw.update(image_meta_size=meta, style=style)
    else:
        raise ValueError(f"no inputs for family {fam!r}")
    return kw


def forward_inputs(preset: ModelPreset, *, rows: int, cols: int, batch: int, device: str,
                   dtype: Any, seed: int = 0) -> dict[str, Any]:
    """Random keyword arguments for ``transformer(**inputs)`` on a ``rows × cols`` token grid.

    Example: pixart-tiny (patch 2) with ``rows=4, cols=16`` gets an 8 × 32 latent, i.e. a
    PipeFusion patch of a quarter of the 16 × 16-token image.
    """
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    p = preset.arch.patch_size
    latent = torch.randn(batch, preset.arch.latent_channels, rows * p, cols * p, generator=gen)
    one = random_branch(preset, gen, null=False)
    stacked = Branch(**{name: None if value is None else value.expand(batch, *value.shape[1:]).contiguous()
                        for name, value in vars(one).items()})
    return transformer_kwargs(preset, latent.to(device=device, dtype=dtype), torch.tensor(PROFILE_TIMESTEP),
                              stacked)


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
