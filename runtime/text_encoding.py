"""Prompt text → embeddings with the text encoders of a local diffusers folder, once per run.

When ``--model-path`` holds a pipeline's text encoders (``model_index.json`` and a
``text_encoder/`` folder), the launcher encodes the prompt here, in the parent process,
through the pipeline's own ``encode_prompt`` with the arguments its ``__call__`` passes
(loaded with a meta-device transformer and no VAE, ``local_files_only``), and hands every rank the same embeddings as a ``--prompt-embeds``
file: encoders run once, not once per rank, and ranks cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from profiles.errors import InputError
from profiles.loading import read_document
from profiles.catalog.models import ModelPreset
from runtime.conditioning import Branch, Conditioning
from runtime.families import adapter_for


def has_text_encoders(model_path: Path | None) -> bool:
    return model_path is not None and (model_path / "model_index.json").is_file() \
        and any(p.is_dir() for p in model_path.glob("text_encoder*"))


def encoding_pipeline(preset: ModelPreset, model_path: Path) -> Any:
    """The folder's pipeline with its text encoders, a meta-device transformer (the pipeline reads its
    config and dtype: SD3 pads a missing T5 with zeros of ``joint_attention_dim``) and no VAE."""
    from runtime.model_build import transformer_class
    from runtime.pipeline_prep import pipeline_class

    cls = pipeline_class(preset, model_path)
    tcls = transformer_class(preset)
    with torch.device("meta"):
        transformer = tcls.from_config(tcls.load_config(str(model_path / "transformer"), local_files_only=True))
    try:
        pipe = cls.from_pretrained(str(model_path), transformer=transformer, vae=None, local_files_only=True,
                                   **absent_components(model_path))
    except Exception as exc:  # noqa: BLE001 - a custom-code component, a missing folder, an encoder that fails to load
        raise InputError(f"cannot load the text encoders of {cls.__name__} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})", file=str(model_path),
                         field="--model-path") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def absent_components(model_path: Path) -> dict[str, None]:
    """Components ``model_index.json`` lists as null or whose folder is missing (an SD3 saved without
    its T5): passed as None, as diffusers asks (``text_encoder_3=None``)."""
    index = read_document(model_path / "model_index.json")  # bad JSON: one line naming the file
    return {name: None for name, value in index.items()
            if not name.startswith("_") and isinstance(value, list) and len(value) == 2
            and (value[0] is None or not (model_path / name).exists())}


def encode_prompt(preset: ModelPreset, model_path: Path, prompt: str, negative: str = "",
                  pipe: Any | None = None) -> Conditioning:
    """Conditioning from the folder's pipeline, encoded with the arguments its ``__call__`` uses."""
    pipe = pipe if pipe is not None else encoding_pipeline(preset, model_path)
    with torch.inference_mode():
        return adapter_for(preset.family).encode_prompt(pipe, preset, prompt, negative)


def save_conditioning(cond: Conditioning, path: Path) -> None:
    """The ``--prompt-embeds`` file format: ``{"cond": {...}, "uncond": {...}}``."""
    def as_dict(branch: Branch) -> dict[str, torch.Tensor]:
        return {k: v.contiguous() for k, v in vars(branch).items() if v is not None}

    data = {"cond": as_dict(cond.cond)}
    if cond.uncond is not None:
        data["uncond"] = as_dict(cond.uncond)
    torch.save(data, path)
