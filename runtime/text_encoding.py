"""Prompt text → embeddings with the text encoders of a local diffusers folder, once per run.

When ``--model-path`` holds a pipeline's text encoders (``model_index.json`` and a
``text_encoder/`` folder), the launcher encodes the prompt here, in the parent process,
through the pipeline's own ``encode_prompt`` (loaded with ``transformer=None, vae=None``,
``local_files_only``), and hands every rank the same embeddings as a ``--prompt-embeds``
file: encoders run once, not once per rank, and ranks cannot disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from profiles.errors import InputError
from profiles.models import ModelPreset
from runtime.model_inputs import Branch, Conditioning


def has_text_encoders(model_path: Path | None) -> bool:
    return model_path is not None and (model_path / "model_index.json").is_file() \
        and (model_path / "text_encoder").is_dir()


def encode_prompt(preset: ModelPreset, model_path: Path, prompt: str, negative: str = "") -> Conditioning:
    """Conditioning from the folder's pipeline (PixArt, SD3, Flux)."""
    import diffusers

    index = json.loads((model_path / "model_index.json").read_text())
    cls = getattr(diffusers, index.get("_class_name", ""), None)
    if cls is None:
        raise InputError(f"unknown pipeline class {index.get('_class_name')!r}", file=str(model_path / "model_index.json"),
                         field="_class_name")
    pipe = cls.from_pretrained(str(model_path), transformer=None, vae=None, local_files_only=True)
    cpu = torch.device("cpu")
    with torch.inference_mode():
        if preset.family == "pixart":
            pe, pm, npe, npm = pipe.encode_prompt(prompt, do_classifier_free_guidance=True, negative_prompt=negative,
                                                  device=cpu, max_sequence_length=preset.text_tokens)
            return Conditioning(cond=Branch(prompt_embeds=pe, prompt_mask=pm),
                                uncond=Branch(prompt_embeds=npe, prompt_mask=npm))
        if preset.family == "sd3":
            pe, npe, pooled, npooled = pipe.encode_prompt(prompt=prompt, prompt_2=None, prompt_3=None, device=cpu,
                                                          do_classifier_free_guidance=True, negative_prompt=negative)
            return Conditioning(cond=Branch(prompt_embeds=pe, pooled_embeds=pooled),
                                uncond=Branch(prompt_embeds=npe, pooled_embeds=npooled))
        if preset.family == "flux":
            pe, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=cpu,
                                               max_sequence_length=preset.text_tokens)
            return Conditioning(cond=Branch(prompt_embeds=pe, pooled_embeds=pooled), uncond=None)
    raise InputError(f"encoding prompts with the folder's text encoders is not implemented for {preset.family}; "
                     f"pass --prompt-embeds", field="--prompt")


def save_conditioning(cond: Conditioning, path: Path) -> None:
    """The ``--prompt-embeds`` file format: ``{"cond": {...}, "uncond": {...}}``."""
    def as_dict(branch: Branch) -> dict[str, torch.Tensor]:
        return {k: v.contiguous() for k, v in vars(branch).items() if v is not None}

    data = {"cond": as_dict(cond.cond)}
    if cond.uncond is not None:
        data["uncond"] = as_dict(cond.uncond)
    torch.save(data, path)
