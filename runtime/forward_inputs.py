"""Keyword arguments of each family's diffusers transformer, built once for profiler and runtime.

Each family's ``forward`` wants different inputs besides the latent (PixArt: caption
embeddings and, for PixArt-α 1024, the image size and aspect ratio; SD3: pooled
projections; Flux: packed latents, ``txt_ids``/``img_ids`` and a guidance value; DiT: class
labels; HunyuanDiT: two text encoders, masks, the pipeline's cropped 2-D rotary table and,
for v1.1, the image-size/style conditioning). The family's adapter
(:mod:`runtime.families`) builds them; this module is the one entry both users call. The
profiler runs the model's forward on a patch of ``rows × cols`` tokens with random inputs
(:func:`forward_inputs`); the runtime runs it with seeded or encoded prompts
(:mod:`runtime.model_inputs`) and rebuilds the same conditioning in its staged adapter.
So the two cannot disagree.
"""

from __future__ import annotations

from typing import Any

import torch

from profiles.catalog.models import ModelPreset
from runtime.conditioning import Branch
from runtime.families import adapter_for, image_size_px

__all__ = ["PROFILE_TIMESTEP", "Branch", "forward_inputs", "image_size_px", "model_timestep", "output_module",
           "random_branch", "single_block_overrides", "transformer_kwargs"]

PROFILE_TIMESTEP = 500
"""The timestep the profiler's forward uses (0..1000 scale; timing does not depend on it)."""


def random_branch(preset: ModelPreset, gen: Any, *, null: bool) -> Branch:
    """Seeded stand-in embeddings (batch 1) with the shapes the family's text encoders produce."""
    return adapter_for(preset.family).random_branch(preset, gen, null=null)


def model_timestep(preset: ModelPreset, t: Any, batch: int, dtype: Any) -> Any:
    """The timestep the family's forward expects (Flux: t/1000; HunyuanDiT and SD3: float)."""
    return adapter_for(preset.family).timestep(t, batch, dtype)


def transformer_kwargs(preset: ModelPreset, latent: Any, t: Any, branch: Branch) -> dict[str, Any]:
    """Keyword arguments of the whole transformer's forward for a (B, C, H, W) latent at timestep ``t``.

    ``branch`` holds batch-``B`` conditioning; it is moved to the latent's device and dtype.
    """
    return adapter_for(preset.family).transformer_kwargs(preset, latent, t, branch)


def forward_inputs(preset: ModelPreset, *, rows: int, cols: int, batch: int, device: str,
                   dtype: Any, seed: int = 0) -> dict[str, Any]:
    """Random keyword arguments for ``transformer(**inputs)`` on a ``rows × cols`` token grid.

    Example: pixart-tiny (patch 2) with ``rows=4, cols=16`` gets an 8 × 32 latent, i.e. a
    PipeFusion patch of a quarter of the 16 × 16-token image.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    p = preset.arch.patch_size
    latent = torch.randn(batch, preset.arch.latent_channels, rows * p, cols * p, generator=gen)
    one = random_branch(preset, gen, null=False)
    stacked = Branch(**{name: None if value is None else value.expand(batch, *value.shape[1:]).contiguous()
                        for name, value in vars(one).items()})
    return transformer_kwargs(preset, latent.to(device=device, dtype=dtype), torch.tensor(PROFILE_TIMESTEP),
                              stacked)


def single_block_overrides(preset: ModelPreset) -> dict[str, Any]:
    """Config overrides that keep one block of every kind (the profiler builds only these)."""
    return adapter_for(preset.family).single_block_overrides()


def output_module(preset: ModelPreset, model: Any) -> Any:
    """The module whose end marks the end of the final layer (see each adapter's ``output_module``)."""
    return adapter_for(preset.family).output_module(model)
