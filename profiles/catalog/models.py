"""The model catalog: shipped presets, user presets, and diffusers ``config.json`` files.

A preset is the diffusers transformer config plus what the config does not say (text
tokens, CFG, scheduler, a tiny VAE for tests). Everything dimensional is derived from the
config through :mod:`profiles.catalog.architecture`, so there is one source of truth.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from profiles.formats import FormatModel
from pydantic import ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from profiles.catalog.architecture import Architecture
from profiles.errors import InputError
from profiles.families import FamilyRegistry, FamilySpec, default_registry
from profiles.loading import load_model_file, read_document, suggest

MODELS_DIR = Path(__file__).parents[1] / "data" / "models"


class ComponentSize(FormatModel):
    """A pipeline component beside the transformer (a text encoder, the VAE): its published size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(description="E.g. umT5-XXL, Qwen2.5-VL-7B, CLIP-L, AutoencoderKLWan.")
    params: float = Field(gt=0, description="Parameters the pipeline loads for it.")
    source: str = Field(min_length=1, description="Where the size is published.")


class ModelPreset(FormatModel):
    """One DiT the toolkit can plan for and run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    name: str = Field(description="Catalog name, e.g. pixart-alpha.")
    family: str = Field(description="Model family: a module of profiles.families.",
                        json_schema_extra=lambda schema: schema.update(enum=default_registry().names()))
    description: str = ""
    config: dict[str, Any] = Field(description="diffusers transformer config (the keys of its config.json).")
    text_tokens: int = Field(ge=0, description="Text tokens the blocks attend to (0: class-conditioned).")
    text_embed_dim: int = Field(ge=0, description="Width of the precomputed prompt embeddings fed to the model.")
    pooled_embed_dim: int = Field(0, ge=0, description="Width of pooled prompt embeddings (SD3, Flux), 0 if none.")
    uses_cfg: bool = Field(description="Classifier-free guidance doubles the batch (and allows cfg=2).")
    vae_scale_factor: int = Field(8, gt=0, description="Image pixels per latent pixel.")
    default_resolution: int = Field(1024, gt=0)
    default_steps: int = Field(20, gt=0)
    scheduler: str = Field("DPMSolverMultistepScheduler", description="diffusers scheduler class.")
    scheduler_config: dict[str, Any] = Field(default_factory=dict)
    vae_config: dict[str, Any] | None = Field(None, description="AutoencoderKL config for a random-weight VAE (tiny presets).")
    tiny: bool = Field(False, description="A scaled-down test variant with random weights.")
    tiny_of: str | None = Field(None, description="The real preset this one scales down.")
    published_params: float | None = Field(None, description="Published parameter count of the transformer.")
    published_source: str | None = None
    default_frames: int = Field(1, gt=0, description="Frames of one generation (1: an image model).")
    vae_temporal_factor: int = Field(1, gt=0, description="Video frames per latent frame after the first "
                                                          "(1: no temporal compression).")
    text_encoder_sizes: tuple[ComponentSize, ...] = Field((), description="The pipeline's text encoders.")
    vae_size: ComponentSize | None = Field(None, description="The pipeline's VAE.")
    fps: float | None = Field(None, gt=0, description="Frames per second the pipeline's clips play at (video).")
    experts: int = Field(1, gt=0, description="Transformers of identical shape the pipeline holds and switches "
                                              "between by timestep (Wan 2.2 A14B: 2); each step runs one.")
    expert_boundary_ratio: float | None = Field(None, gt=0, lt=1, description="Timestep / 1000 above which "
                                                "the first (high-noise) expert runs (Wan 2.2: 0.875).")
    _spec: FamilySpec = PrivateAttr()

    @field_validator("family")
    @classmethod
    def _registered(cls, name: str, info: ValidationInfo) -> str:
        families = _families(info)
        if name not in families:
            names = [repr(n) for n in families.names()]
            expected = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else "".join(names)
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return name

    @model_validator(mode="after")
    def _attach_spec(self, info: ValidationInfo) -> ModelPreset:
        self._spec = _families(info).get(self.family)
        return self

    @property
    def spec(self) -> FamilySpec:
        """The family's torch-free spec (:mod:`profiles.families`): the one it was validated against."""
        spec = (self.__pydantic_private__ or {}).get("_spec")  # unset only under model_construct
        return spec if spec is not None else default_registry().get(self.family)

    @cached_property
    def arch(self) -> Architecture:
        return self.spec.architecture(self.config)

    @property
    def diffusers_class(self) -> str:
        return self.spec.diffusers_class

    @property
    def layers(self) -> int:
        return self.arch.layers

    @property
    def params(self) -> int:
        return self.arch.params

    @property
    def is_video(self) -> bool:
        return self.vae_temporal_factor > 1 or self.default_frames > 1

    def latent_frames(self, frames: int | None = None) -> int:
        """Latent frames of a clip: the first frame alone, then one per ``vae_temporal_factor`` frames.

        Worked example (Wan, factor 4): 81 frames → 1 + 80/4 = 21 latent frames; 1 frame → 1.
        """
        frames = self.default_frames if frames is None else frames
        t = self.vae_temporal_factor
        if frames < 1 or (frames - 1) % t:
            raise InputError(f"{self.name}: {frames} frames: expected 1 + a multiple of {t} (the VAE's temporal "
                             f"factor), e.g. {1 + t * max(1, (frames - 1) // t)}", field="frames")
        if frames > 1 and not self.is_video:
            raise InputError(f"{self.name} is an image model: frames must be 1, got {frames}", field="frames")
        return (frames - 1) // t + 1

    def with_frames(self, frames: int | None) -> ModelPreset:
        """This preset generating ``frames`` frames by default (None: unchanged); checks the count."""
        if frames is None or frames == self.default_frames:
            return self
        self.latent_frames(frames)
        return self.model_copy(update={"default_frames": frames})

    def latent_size(self, height_px: int, width_px: int) -> tuple[int, int]:
        """Latent (rows, cols), checking the resolution is a whole number of tokens.

        A video's latent frames are stacked along the rows (frame-major, as the transformer
        flattens its (frames, rows, cols) tokens): 21 latent frames of 90 rows are 1890 rows,
        so PipeFusion's row patches cut along frames first, then rows. An image has one frame.
        """
        step = self.vae_scale_factor * self.arch.patch_size
        for side, value in (("height", height_px), ("width", width_px)):
            if value <= 0 or value % step:
                raise InputError(f"{self.name}: image {side} {value} px must be a positive multiple of "
                                 f"{step} (VAE factor {self.vae_scale_factor} × patch {self.arch.patch_size})",
                                 field="resolution")
        return self.latent_frames() * (height_px // self.vae_scale_factor), width_px // self.vae_scale_factor

    def token_grid(self, height_px: int, width_px: int) -> tuple[int, int]:
        """Image tokens as (rows, cols): patches are cut along rows (a video's frames stacked, see :meth:`latent_size`)."""
        rows, cols = self.latent_size(height_px, width_px)
        return self.spec.token_grid(self.arch, rows, cols)

    def clip_seconds(self) -> float | None:
        """Seconds of video one generation makes (None for an image model or an unknown frame rate)."""
        return self.default_frames / self.fps if self.is_video and self.fps else None

    def vae_decode_flops(self, height_px: int, width_px: int) -> float | None:
        """FLOPs of decoding one generation (all its frames) with the family's VAE (None: not counted)."""
        per = self.spec.vae.decode_flops_per_pixel_frame
        return None if per is None else per * self.default_frames * height_px * width_px

    @property
    def total_params(self) -> int:
        """Transformer parameters the pipeline holds: every expert (Wan 2.2 A14B: two of ``params``)."""
        return self.experts * self.params

    def image_tokens(self, height_px: int, width_px: int | None = None) -> int:
        rows, cols = self.token_grid(height_px, height_px if width_px is None else width_px)
        return rows * cols

    def summary(self) -> dict[str, Any]:
        """The fields a user compares presets by (``pfplan models --json``)."""
        a = self.arch
        return {
            "name": self.name, "family": self.family, "diffusers_class": self.diffusers_class,
            "tiny": self.tiny, "blocks": {g.kind: g.count for g in a.blocks}, "layers": a.layers,
            "hidden_size": a.hidden_size, "heads": a.heads, "head_dim": a.head_dim,
            "ffn_inner": a.ffn_inner, "patch_size": a.patch_size, "latent_channels": a.latent_channels,
            "vae_scale_factor": self.vae_scale_factor, "text_tokens": self.text_tokens,
            "attention": a.attention, "uses_cfg": self.uses_cfg, "params": a.params,
            "published_params": self.published_params,
            "default_resolution": self.default_resolution,
            "image_tokens_at_default": self.image_tokens(self.default_resolution),
            **({"default_frames": self.default_frames, "latent_frames": self.latent_frames(),
                "vae_temporal_factor": self.vae_temporal_factor} if self.is_video else {}),
            **({"experts": self.experts, "total_params": self.total_params} if self.experts > 1 else {}),
            **({"text_encoder_params": {e.kind: e.params for e in self.text_encoder_sizes}}
               if self.text_encoder_sizes else {}),
        }


def _families(info: ValidationInfo) -> FamilyRegistry:
    """The registry a validation was given (``context={"families": ...}``), else the default one."""
    context = info.context if isinstance(info.context, dict) else {}
    return context.get("families") or default_registry()


def shipped_names() -> list[str]:
    return sorted(p.stem for p in MODELS_DIR.glob("*.yaml"))


def load_shipped(name: str) -> ModelPreset:
    return load_model_file(ModelPreset, MODELS_DIR / f"{name}.yaml")


def all_presets() -> list[ModelPreset]:
    return [load_shipped(name) for name in shipped_names()]


def preset_from_diffusers_config(path: Path, *, name: str | None = None) -> ModelPreset:
    """A preset from a diffusers transformer ``config.json`` (defaults for what it lacks)."""
    data = read_document(path)
    if not isinstance(data, dict) or "_class_name" not in data:
        raise InputError("not a diffusers config: no '_class_name'", file=str(path), field="_class_name")
    try:
        spec = default_registry().by_class(data["_class_name"])
    except InputError as exc:
        raise InputError(exc.message, file=str(path), field="_class_name") from None
    config = {k: v for k, v in data.items() if not k.startswith("_")}
    preset = ModelPreset(name=name or Path(path).parent.name or Path(path).stem, family=spec.name,
                         description=f"imported from {path}", config=config, **spec.preset_defaults(config))
    try:
        preset.arch  # noqa: B018 - fail now, naming the file, if the config is incomplete
    except InputError as exc:
        raise InputError(exc.message, file=str(path), field=exc.field) from None
    return preset


def load_model(name_or_path: str) -> ModelPreset:
    """A shipped preset by name, a preset YAML/JSON file, or a diffusers ``config.json``."""
    path = Path(name_or_path)
    if path.is_dir() and (path / "config.json").exists():
        return preset_from_diffusers_config(path / "config.json")
    if path.is_dir() and (path / "transformer" / "config.json").exists():
        return preset_from_diffusers_config(path / "transformer" / "config.json", name=path.name)
    if path.is_file():
        data = read_document(path)
        if isinstance(data, dict) and "_class_name" in data:
            return preset_from_diffusers_config(path)
        preset = load_model_file(ModelPreset, path)
        try:
            preset.arch  # noqa: B018
        except InputError as exc:
            raise InputError(exc.message, file=str(path), field=exc.field) from None
        return preset
    stem = name_or_path.removesuffix(".yaml")
    if stem in shipped_names():
        return load_shipped(stem)
    if path.suffix in (".json", ".yaml", ".yml") or len(path.parts) > 1:
        raise InputError("file not found (expected a preset name, preset file or diffusers config)",
                         file=name_or_path)
    raise InputError(f"unknown model {name_or_path!r}: not a shipped preset, preset file or diffusers "
                     f"config; {suggest(stem, shipped_names())}", field="model")
