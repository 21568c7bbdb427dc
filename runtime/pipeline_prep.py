"""The diffusers pipeline object of a run, built around pfrun's transformer, for its own preparation.

pfrun patches the transformer and keeps diffusers' scheduler and VAE; what a pipeline does
*around* them (draw the latent, set timesteps, default guidance, bin resolutions, scale
factors) is read from the pipeline itself rather than written again. So each rank builds
the family's pipeline class (or the one a folder's ``model_index.json`` names) from the
parts it already holds (transformer, scheduler, VAE; no text encoders: the launcher
encoded the prompts once, :mod:`runtime.text_encoding`) and calls its methods: the
family adapter says which (:meth:`~runtime.families.base.FamilyAdapter.prepare_latents`,
``timestep_recipe``, ``generation_size``).

When the run does not decode, the VAE is built on the meta device from its config: the
pipeline reads only its config (the scale factor), so the factor comes from the VAE the
folder has (4 for a three-level VAE), never an assumed 8.
"""

from __future__ import annotations

import inspect
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from profiles.catalog.models import ModelPreset
from profiles.errors import InputError
from runtime.conditioning import GUIDANCE_SCALE
from runtime.families import adapter_for


def pipeline_class(preset: ModelPreset, model_path: Path | None) -> Any:
    """The folder's pipeline class (``model_index.json``), else the family's; :class:`StandInPipeline`
    for a family that names none (its preparation is not yet held against a diffusers pipeline)."""
    import diffusers

    name = adapter_for(preset.family).pipeline_class
    index = model_path / "model_index.json" if model_path is not None else None
    if index is not None and index.is_file():
        name = json.loads(index.read_text()).get("_class_name", name)
    if not name:
        return StandInPipeline
    with quiet_transformers():  # importing a pipeline imports image processors that warn without torchvision
        cls = getattr(diffusers, name, None)
    if cls is None:
        raise InputError(f"unknown diffusers pipeline class {name!r}", file=str(index) if index else None,
                         field="_class_name")
    return cls


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' warnings off for a moment (it logs one per image processor it imports)."""
    try:
        from transformers.utils import logging
    except ImportError:
        yield
        return
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def meta_vae(preset: ModelPreset, model_path: Path | None) -> Any | None:
    """An AutoencoderKL with the folder's (or preset's) config on the meta device: config only, no memory."""
    import diffusers
    import torch

    cls = diffusers.AutoencoderKL
    if model_path is not None and (model_path / "vae" / "config.json").is_file():
        from runtime.model_loading import vae_class

        cls = vae_class(model_path)  # Wan's and HunyuanVideo's 3-D VAEs
        config = cls.load_config(str(model_path / "vae"), local_files_only=True)
    elif preset.vae_config is not None:
        config = preset.vae_config
    else:
        return None
    with torch.device("meta"):
        return cls.from_config(config)


class StandInPipeline:
    """The preparation of a family whose adapter names no diffusers pipeline (Wan, Qwen-Image,
    HunyuanVideo for now): a seeded Gaussian latent of the preset's latent grid (video frames stacked along the
    rows) drawn from the run's generator and scaled by ``init_noise_sigma``, the scheduler's own
    timesteps, and the toolkit's default guidance. Runs are exact against their own serial run,
    not against a diffusers pipeline's ``__call__``."""

    default_guidance_scale = GUIDANCE_SCALE

    def __init__(self, *, preset: ModelPreset, transformer: Any = None, scheduler: Any = None,
                 vae: Any = None) -> None:
        self.preset, self.transformer, self.scheduler, self.vae = preset, transformer, scheduler, vae
        self.vae_scale_factor = preset.vae_scale_factor
        guidance = getattr(preset.arch.spec, "guidance", None)
        if guidance is not None and guidance.embedded and guidance.default_scale is not None:
            self.default_guidance_scale = guidance.default_scale  # the pipeline's embedded default (HunyuanVideo 6.0)

    def set_progress_bar_config(self, **_: Any) -> None:
        """Nothing to configure: the stand-in has no progress bar."""

    def prepare_latents(self, batch: int, channels: int, height: int, width: int, dtype: Any, device: Any,
                        generator: Any) -> Any:
        import torch

        rows, cols = self.preset.latent_size(height, width)
        latent = torch.randn(batch, self.preset.arch.latent_channels, rows, cols, generator=generator)
        sigma = getattr(self.scheduler, "init_noise_sigma", 1.0)
        return (latent * sigma).to(device=device, dtype=dtype)


def build_pipeline(cls: Any, **parts: Any) -> Any:
    """``cls`` from the given parts; every other module of its ``__init__`` is None."""
    if cls is StandInPipeline:
        return StandInPipeline(**{k: v for k, v in parts.items() if k in ("preset", "transformer", "scheduler", "vae")})
    params = inspect.signature(cls.__init__).parameters
    kwargs = {name: None for name, p in params.items() if name != "self" and p.default is inspect.Parameter.empty}
    kwargs.update({k: v for k, v in parts.items() if k in params})
    if "requires_safety_checker" in params:
        kwargs["requires_safety_checker"] = False
    pipe = cls(**kwargs)
    if not hasattr(pipe, "vae_scale_factor"):  # DiTPipeline keeps none; its latent size is the sample size
        vae = parts.get("vae")
        pipe.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 8
    pipe.set_progress_bar_config(disable=True)
    return pipe


def rank_pipeline(preset: ModelPreset, *, transformer: Any, scheduler: Any, vae: Any | None,
                  model_path: Path | None) -> Any:
    """The pipeline a rank prepares with: its transformer and scheduler, the VAE (or its meta config)."""
    return build_pipeline(pipeline_class(preset, model_path), preset=preset, transformer=transformer,
                          scheduler=scheduler, vae=vae if vae is not None else meta_vae(preset, model_path))


def size_pipeline(preset: ModelPreset, model_path: Path | None) -> Any:
    """A pipeline with a meta-device transformer and VAE: enough for its size rules (bins, scale factor)."""
    from runtime.model_build import build_transformer, transformer_class
    from runtime.model_loading import make_scheduler

    if model_path is not None and (model_path / "transformer" / "config.json").is_file():
        import torch

        cls = transformer_class(preset)
        with torch.device("meta"):
            transformer = cls.from_config(cls.load_config(str(model_path / "transformer"), local_files_only=True))
    else:
        transformer = build_transformer(preset, meta=True)
    return build_pipeline(pipeline_class(preset, model_path), preset=preset, transformer=transformer,
                          scheduler=make_scheduler(preset, model_path), vae=meta_vae(preset, model_path))


class LazyPipeline:
    """Builds the pipeline on first attribute access: most size rules never read it (importing a
    pipeline class costs seconds before any rank starts)."""

    def __init__(self, build: Any) -> None:
        self._build, self._pipe = build, None

    def _get(self) -> Any:
        if self._pipe is None:
            self._pipe = self._build()
        return self._pipe

    @property  # type: ignore[misc]
    def __class__(self) -> Any:  # the pipeline's class, as isinstance and the bins' lookup see it
        return type(self._get())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


def default_guidance(pipe: Any) -> float:
    """The pipeline's own default guidance scale (PixArt 4.5, SD3 7.0, Flux 3.5, DiT 4.0, HunyuanDiT 5.0)."""
    if isinstance(pipe, StandInPipeline):
        return pipe.default_guidance_scale
    value = inspect.signature(type(pipe).__call__).parameters.get("guidance_scale")
    return float(value.default) if value is not None and value.default is not None else 1.0


def vae_scale_factor(pipe: Any) -> int:
    return int(getattr(pipe, "vae_scale_factor", 8))
