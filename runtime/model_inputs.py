"""Inputs a DiT needs besides the latent: prompt embeddings, timesteps, per-family extras.

Each family's diffusers transformer wants different keyword arguments (PixArt: caption
embeddings; SD3: pooled projections; Flux: packed latents, ``txt_ids``/``img_ids`` and a
guidance value; DiT: class labels; HunyuanDiT: two text encoders, masks, rotary
embeddings and a float timestep). This module builds them in one place, for the whole
model (the serial reference) and for the staged executors alike.

Prompt embeddings come from a seeded generator (tiny presets have no text encoder: the
prompt text, hashed, seeds them), from ``--prompt-embeds FILE`` (``torch.save`` of a dict
with the keys of :class:`Branch`), or from the folder's text encoders (not yet: refused).
Classifier-free guidance runs the ``uncond`` and ``cond`` branches as a batch of two, in
that order, or one branch per rank under CFG parallel.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from profiles.errors import InputError
from profiles.models import ModelPreset

GUIDANCE_SCALE = 4.5
"""Classifier-free guidance scale (and Flux's distilled guidance value)."""
FLUX_GUIDANCE = 3.5


@dataclass
class Branch:
    """One prompt's conditioning, batch 1 (None where the family has no such input)."""

    prompt_embeds: torch.Tensor | None = None
    prompt_mask: torch.Tensor | None = None
    pooled_embeds: torch.Tensor | None = None
    prompt_embeds_2: torch.Tensor | None = None
    prompt_mask_2: torch.Tensor | None = None
    class_label: torch.Tensor | None = None


@dataclass
class Conditioning:
    """Both CFG branches (``uncond`` is None for models without CFG)."""

    cond: Branch
    uncond: Branch | None
    guidance_scale: float = GUIDANCE_SCALE

    def branches(self, names: tuple[str, ...]) -> Branch:
        """The named branches stacked into one batch (``("uncond", "cond")`` for batch-2 CFG)."""
        parts = [getattr(self, name) for name in names]
        out = Branch()
        for f in fields(Branch):
            values = [getattr(p, f.name) for p in parts]
            if values[0] is not None:
                setattr(out, f.name, torch.cat(values, dim=0))
        return out


def prompt_seed(prompt: str | None, seed: int) -> int:
    """A stable seed from the prompt text (tiny presets have no text encoder)."""
    digest = hashlib.sha256(f"{prompt or ''}|{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def random_branch(preset: ModelPreset, gen: torch.Generator, *, null: bool) -> Branch:
    """Seeded stand-in embeddings with the shapes the family's text encoders produce."""
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


def make_conditioning(preset: ModelPreset, *, seed: int, prompt: str | None = None,
                      prompt_embeds_file: Path | None = None) -> Conditioning:
    """Conditioning for one image: from a file, or seeded from the prompt text."""
    if prompt_embeds_file is not None:
        return load_prompt_embeds(preset, prompt_embeds_file)
    gen = torch.Generator().manual_seed(prompt_seed(prompt, seed))
    cond = random_branch(preset, gen, null=False)
    uncond = random_branch(preset, torch.Generator().manual_seed(prompt_seed("", seed) ^ 1), null=True) \
        if preset.uses_cfg else None
    return Conditioning(cond=cond, uncond=uncond)


def load_prompt_embeds(preset: ModelPreset, path: Path) -> Conditioning:
    """``torch.save({"cond": {...}, "uncond": {...}}, path)`` with :class:`Branch` keys."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError("file not found", file=str(path), field="--prompt-embeds") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
        raise InputError(f"cannot read torch file ({type(exc).__name__})", file=str(path)) from None
    if not isinstance(data, dict) or "cond" not in data:
        raise InputError("expected a dict with 'cond' (and 'uncond' for CFG models)", file=str(path))
    names = {f.name for f in fields(Branch)}

    def branch(key: str) -> Branch:
        part = data[key]
        unknown = set(part) - names if isinstance(part, dict) else {"<not a dict>"}
        if unknown:
            raise InputError(f"unknown keys {sorted(unknown)}; keys: {sorted(names)}", file=str(path), field=key)
        return Branch(**{k: (v if v.dim() > 1 or k == "class_label" else v[None]) for k, v in part.items()})

    def check(branch_: Branch, key: str) -> Branch:
        widths = {"prompt_embeds": preset.text_embed_dim, "pooled_embeds": preset.pooled_embed_dim}
        if preset.family == "hunyuan":
            widths = {"prompt_embeds": preset.config.get("cross_attention_dim"),
                      "prompt_embeds_2": preset.config.get("cross_attention_dim_t5")}
        for name, width in widths.items():
            value = getattr(branch_, name)
            if value is not None and width and value.shape[-1] != width:
                raise InputError(f"{name} has width {value.shape[-1]}, {preset.name} expects width {width}",
                                 file=str(path), field=f"{key}.{name}")
        return branch_

    if preset.uses_cfg and "uncond" not in data:
        raise InputError(f"{preset.name} uses CFG: 'uncond' embeddings are required", file=str(path), field="uncond")
    return Conditioning(cond=check(branch("cond"), "cond"),
                        uncond=check(branch("uncond"), "uncond") if preset.uses_cfg else None)


def initial_latent(preset: ModelPreset, height_px: int, width_px: int, seed: int,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Seeded Gaussian latent (1, C, H/8, W/8), drawn on CPU so every device agrees."""
    rows, cols = preset.latent_size(height_px, width_px)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(1, preset.arch.latent_channels, rows, cols, generator=gen).to(dtype)


def pack_flux(latent: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, H/2·W/2, 4C): Flux's 2×2 packing, row-major over token rows."""
    b, c, h, w = latent.shape
    return latent.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_flux(tokens: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of :func:`pack_flux` for a grid of ``rows × cols`` tokens."""
    b, _, ch = tokens.shape
    c = ch // 4
    return tokens.view(b, rows, cols, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, rows * 2, cols * 2)


def flux_image_ids(rows: int, cols: int) -> torch.Tensor:
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3)


def hunyuan_rotary(model: Any, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    from diffusers.models.embeddings import get_2d_rotary_pos_embed
    from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import get_resize_crop_region_for_grid

    base = 512 // 8 // model.config.patch_size
    crops = get_resize_crop_region_for_grid((rows, cols), base)
    return get_2d_rotary_pos_embed(model.inner_dim // model.num_heads, crops, (rows, cols), output_type="pt")


def model_timestep(preset: ModelPreset, t: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
    """The timestep the family's forward expects (Flux: t/1000; HunyuanDiT: float)."""
    t = t.reshape(()).expand(batch)
    if preset.family == "flux":
        return t.to(dtype) / 1000
    if preset.family in ("hunyuan", "sd3"):
        return t.to(dtype)
    return t


def forward_kwargs(preset: ModelPreset, model: Any, latent: torch.Tensor, t: torch.Tensor,
                   branch: Branch) -> dict[str, Any]:
    """Keyword arguments of the whole transformer's forward for a (B, C, H, W) latent."""
    batch, _, h, w = latent.shape
    p = preset.arch.patch_size
    dtype, dev = latent.dtype, latent.device
    kw: dict[str, Any] = {"timestep": model_timestep(preset, t.to(dev), batch, dtype), "return_dict": False}
    fam = preset.family
    if fam == "flux":
        kw.update(hidden_states=pack_flux(latent), encoder_hidden_states=branch.prompt_embeds.to(dtype),
                  pooled_projections=branch.pooled_embeds.to(dtype),
                  txt_ids=torch.zeros(branch.prompt_embeds.shape[1], 3, device=dev),
                  img_ids=flux_image_ids(h // p, w // p).to(dev))
        if model.config.guidance_embeds:
            kw["guidance"] = torch.full((batch,), FLUX_GUIDANCE, dtype=dtype, device=dev)
        return kw
    kw["hidden_states"] = latent
    if fam == "dit":
        kw["class_labels"] = branch.class_label
    elif fam == "pixart":
        kw.update(encoder_hidden_states=branch.prompt_embeds.to(dtype), encoder_attention_mask=branch.prompt_mask,
                  added_cond_kwargs={"resolution": None, "aspect_ratio": None})
    elif fam == "sd3":
        kw.update(encoder_hidden_states=branch.prompt_embeds.to(dtype), pooled_projections=branch.pooled_embeds.to(dtype))
    elif fam == "hunyuan":
        kw.update(encoder_hidden_states=branch.prompt_embeds.to(dtype), text_embedding_mask=branch.prompt_mask,
                  encoder_hidden_states_t5=branch.prompt_embeds_2.to(dtype), text_embedding_mask_t5=branch.prompt_mask_2,
                  image_rotary_emb=tuple(x.to(dev) for x in hunyuan_rotary(model, h // p, w // p)))
    return kw


def noise_from_output(preset: ModelPreset, out: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The model output as a (B, C, H, W) noise prediction (Flux unpacked; learned sigma dropped)."""
    if preset.family == "flux":
        out = unpack_flux(out, rows, cols)
    c = preset.arch.latent_channels
    return out[:, :c] if out.shape[1] > c else out


def guide(noise: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on a batch ordered (uncond, cond)."""
    uncond, cond = noise.chunk(2)
    return uncond + scale * (cond - uncond)
