"""Build a preset's diffusers transformer (random weights, or on the meta device).

Only the runtime and the profiler import this (it imports torch and diffusers, ~8 s);
the planner and simulator stay light. Weights are seeded so every rank of a run, and
every run with the same seed, builds the identical model. The block list comes from the
family's adapter (:mod:`runtime.families`).
"""

from __future__ import annotations

from typing import Any

from profiles.catalog.models import ModelPreset


def transformer_class(preset: ModelPreset) -> Any:
    import diffusers

    return getattr(diffusers, preset.diffusers_class)


def build_transformer(preset: ModelPreset, *, device: str = "cpu", dtype: Any = None, seed: int = 0,
                      meta: bool = False, config_overrides: dict[str, Any] | None = None) -> Any:
    """The transformer with seeded random weights (``meta=True``: shapes only, no memory)."""
    import torch

    cls = transformer_class(preset)
    config = {**preset.config, **(config_overrides or {})}
    if meta:
        with torch.device("meta"):
            return cls(**config)
    torch.manual_seed(seed)
    model = cls(**config)
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model.to(device).eval()


def transformer_blocks(model: Any, family: str) -> list[Any]:
    """Every transformer block of ``family``'s ``model`` in model order (Flux: double-stream blocks, then single)."""
    from runtime.families import adapter_for

    return adapter_for(family).blocks(model)


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
