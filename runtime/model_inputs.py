"""Inputs a DiT needs besides the latent: prompt embeddings, timesteps, per-family extras.

Each family's diffusers transformer wants different keyword arguments (PixArt: caption
embeddings; SD3: pooled projections; Flux: packed latents, ``txt_ids``/``img_ids`` and a
guidance value; DiT: class labels; HunyuanDiT: two text encoders, masks, rotary
embeddings and a float timestep). The per-family keyword arguments are built by the
family's adapter through :mod:`runtime.forward_inputs` (shared with the profiler, so the
two cannot disagree); this module adds what only a run needs: conditioning per prompt and CFG branch, the initial
latent, and reading the model's output back as noise.

Prompt embeddings come from a seeded generator (tiny presets have no text encoder: the
prompt text, hashed, seeds them; a class-conditioned model takes a number as its class id), from ``--prompt-embeds FILE`` (``torch.save`` of a dict
with the keys of :class:`Branch`), or from the folder's text encoders (not yet: refused).
Classifier-free guidance runs the ``uncond`` and ``cond`` branches as a batch of two, in
that order, or one branch per rank under CFG parallel.
"""

from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path

import torch

from profiles.errors import InputError
from profiles.catalog.models import ModelPreset
from runtime.conditioning import GUIDANCE_SCALE, Branch, Conditioning
from runtime.families import adapter_for
from runtime.families.flux import FLUX_GUIDANCE, flux_image_ids, pack_flux, unpack_flux
from runtime.forward_inputs import model_timestep, random_branch, transformer_kwargs

__all__ = ["FLUX_GUIDANCE", "GUIDANCE_SCALE", "Branch", "Conditioning", "flux_image_ids",
           "guide", "initial_latent", "load_prompt_embeds", "make_conditioning", "model_timestep",
           "noise_from_output", "pack_flux", "prompt_seed", "random_branch", "transformer_kwargs", "unpack_flux"]
# FLUX_GUIDANCE, flux_image_ids, pack_flux and unpack_flux live in runtime.families.flux; re-exported here.


def prompt_seed(prompt: str | None, seed: int) -> int:
    """A stable seed from the prompt text (tiny presets have no text encoder)."""
    digest = hashlib.sha256(f"{prompt or ''}|{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def make_conditioning(preset: ModelPreset, *, seed: int, prompt: str | None = None,
                      prompt_embeds_file: Path | None = None) -> Conditioning:
    """Conditioning for one image: from a file, or seeded from the prompt text."""
    if prompt_embeds_file is not None:
        return load_prompt_embeds(preset, prompt_embeds_file)
    if preset.text_tokens == 0 and prompt is not None and prompt.strip().isdigit():  # a class id (DiT)
        return adapter_for(preset.family).encode_prompt(None, preset, prompt, "")
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
        for name, width in adapter_for(preset.family).embed_widths(preset).items():
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


def noise_from_output(preset: ModelPreset, out: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The model output as a (B, C, H, W) noise prediction (Flux unpacked; learned sigma dropped)."""
    return adapter_for(preset.family).noise_from_output(preset, out, rows, cols)


def guide(noise: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on a batch ordered (uncond, cond)."""
    uncond, cond = noise.chunk(2)
    return uncond + scale * (cond - uncond)
