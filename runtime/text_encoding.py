"""Prompt text → embeddings with the text encoders of a local diffusers folder, once per run.

When ``--model-path`` holds a pipeline's text encoders (``model_index.json`` and a
``text_encoder/`` folder), the launcher encodes the prompt here, in the parent process,
through the pipeline's own ``encode_prompt`` (loaded with ``transformer=None, vae=None``,
``local_files_only``), and hands every rank the same embeddings as a ``--prompt-embeds``
file: encoders run once, not once per rank, and ranks cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

import torch

from profiles.errors import InputError
from profiles.loading import read_document
from profiles.catalog.models import ModelPreset
from runtime.conditioning import Branch, Conditioning
from runtime.families import adapter_for


def has_text_encoders(model_path: Path | None) -> bool:
    return model_path is not None and (model_path / "model_index.json").is_file() \
        and (model_path / "text_encoder").is_dir()


def encode_prompt(preset: ModelPreset, model_path: Path, prompt: str, negative: str = "") -> Conditioning:
    """Conditioning from the folder's pipeline, encoded the way the family's adapter says."""
    import diffusers

    index = read_document(model_path / "model_index.json")  # bad JSON: one line naming the file
    cls = getattr(diffusers, index.get("_class_name", ""), None)
    if cls is None:
        raise InputError(f"unknown pipeline class {index.get('_class_name')!r}", file=str(model_path / "model_index.json"),
                         field="_class_name")
    try:  # a custom-code component, a missing folder, an encoder that fails to load: one line, exit 2
        pipe = cls.from_pretrained(str(model_path), transformer=None, vae=None, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - diffusers/transformers raise ValueError, OSError, ImportError, ...
        raise InputError(f"cannot load the pipeline's text encoders: {type(exc).__name__}: "
                         f"{(str(exc).splitlines() or [''])[0][:120]}", file=str(model_path),
                         field="--model-path") from None
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
