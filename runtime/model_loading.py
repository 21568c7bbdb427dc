"""Load what a run needs: the transformer, the scheduler, the VAE (and text encoders).

Two sources: a tiny (or any) preset built with seeded random weights, so tests and the
demo need no download; or a local diffusers folder (``--model-path``) with
``transformer/``, ``vae/`` and ``scheduler/`` subfolders, read with ``local_files_only``.
Every rank loads the same thing from the same seed, so the weights agree without a
broadcast. The scheduler and VAE are diffusers' own classes, never copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiles.errors import InputError
from profiles.catalog.models import ModelPreset
from runtime.model_build import build_transformer, transformer_class


@dataclass
class LoadedModel:
    """The pieces of a pipeline the executors drive (no diffusers pipeline object)."""

    preset: ModelPreset
    transformer: Any
    scheduler: Any
    vae: Any | None
    model_path: Path | None = None


def make_scheduler(preset: ModelPreset, model_path: Path | None = None, name: str | None = None) -> Any:
    """The preset's diffusers scheduler (from ``model_path/scheduler`` when there is one); ``name``: another
    diffusers scheduler class built from that one's config (``--scheduler``), as ``from_config`` swaps them."""
    import diffusers

    if name is not None:
        cls = getattr(diffusers, name, None)
        if cls is None:
            raise InputError(f"unknown diffusers scheduler {name!r}", field="--scheduler")
        return cls.from_config(make_scheduler(preset, model_path).config)

    config_file = model_path / "scheduler" / "scheduler_config.json" if model_path is not None else None
    if config_file is not None and config_file.is_file():
        name = json.loads(config_file.read_text()).get("_class_name", preset.scheduler)
        cls = getattr(diffusers, name, None)
        if cls is None:
            raise InputError(f"unknown diffusers scheduler {name!r}", file=str(config_file), field="_class_name")
        return cls.from_pretrained(str(config_file.parent), local_files_only=True)
    try:
        cls = getattr(diffusers, preset.scheduler)
    except AttributeError:
        raise InputError(f"{preset.name}: unknown diffusers scheduler {preset.scheduler!r}",
                         field="scheduler") from None
    return cls(**preset.scheduler_config)


def vae_class(model_path: Path) -> Any:
    """The folder VAE's diffusers class (its config's ``_class_name``: ``AutoencoderKLWan`` for Wan's 3-D VAE)."""
    import diffusers

    config = diffusers.AutoencoderKL.load_config(str(model_path / "vae"), local_files_only=True)
    cls = getattr(diffusers, str(config.get("_class_name", "AutoencoderKL")), None)
    if cls is None:
        raise InputError(f"unknown diffusers VAE class {config.get('_class_name')!r}",
                         file=str(model_path / "vae" / "config.json"), field="_class_name")
    return cls


def load_vae(preset: ModelPreset, *, model_path: Path | None, seed: int, device: str, dtype: Any) -> Any | None:
    """The folder's VAE (of the class its config names), or a random-weight AutoencoderKL from ``preset.vae_config``."""
    import diffusers
    import torch

    if model_path is not None and (model_path / "vae").is_dir():
        vae = vae_class(model_path).from_pretrained(str(model_path / "vae"), local_files_only=True)
    elif preset.vae_config is not None:
        torch.manual_seed(seed + 1)
        vae = diffusers.AutoencoderKL(**preset.vae_config)
    else:
        return None
    vae = vae.to(device)
    if dtype != torch.float32:
        vae = vae.to(dtype=dtype)
    return vae.eval()


def load_model_parts(preset: ModelPreset, *, model_path: Path | None = None, seed: int = 0,
                     device: str = "cpu", dtype: Any = None, with_vae: bool = True,
                     config_overrides: dict[str, Any] | None = None, scheduler: str | None = None) -> LoadedModel:
    """Transformer + scheduler (+ VAE); random weights seeded by ``seed`` without ``model_path``."""
    import torch

    dtype = dtype or torch.float32
    if model_path is not None:
        folder = model_path / "transformer"
        if not folder.is_dir():
            raise InputError("expected a diffusers folder with a transformer/ subfolder",
                             file=str(model_path), field="--model-path")
        transformer = transformer_class(preset).from_pretrained(str(folder), local_files_only=True,
                                                                torch_dtype=dtype)
        transformer = transformer.to(device).eval()
    else:
        transformer = build_transformer(preset, device=device, dtype=None if dtype == torch.float32 else dtype, seed=seed,
                                        config_overrides=config_overrides)
    vae = load_vae(preset, model_path=model_path, seed=seed, device=device, dtype=dtype) if with_vae else None
    return LoadedModel(preset=preset, transformer=transformer, scheduler=make_scheduler(preset, model_path, scheduler),
                       vae=vae, model_path=model_path)
