"""A prompt's conditioning as the transformer takes it, for one CFG branch and for both.

Family adapters fill a :class:`Branch` (seeded stand-ins, or a pipeline's ``encode_prompt``);
the executors stack the branches they run into one batch. Fields a family has no use for
stay None.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

GUIDANCE_SCALE = 4.5
"""Classifier-free guidance scale."""


@dataclass
class Branch:
    """One prompt's conditioning, batch first (None where the family has no such input)."""

    prompt_embeds: Any = None
    prompt_mask: Any = None
    pooled_embeds: Any = None
    prompt_embeds_2: Any = None
    prompt_mask_2: Any = None
    class_label: Any = None
    guidance: Any = None
    """Flux's distilled guidance value, shape (1,) (the guidance embedding's input; None: the default)."""


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
