"""Model families on the torch side, one adapter per module, found by name through :func:`registry`.

Each module ``runtime/families/<family>.py`` defines one :class:`FamilyAdapter` subclass
for the family of that name (the name ``ModelPreset.family`` holds and
``profiles/families/`` registers the torch-free spec under). To add a family, add a
module with one adapter class and name it in :data:`FAMILY_MODULES`.
"""

from __future__ import annotations

from importlib import import_module

from runtime.families.base import (AttentionKind, FamilyAdapter, FamilyRegistry, StepContext, UnknownFamily,
                                   drop_learned_sigma, image_size_px, unpatchify)

FAMILY_MODULES = ("pixart", "sd3", "flux", "dit", "hunyuan")


def registry() -> FamilyRegistry:
    """A fresh registry of every family adapter (no module-level state to mutate)."""
    reg = FamilyRegistry()
    for module_name in FAMILY_MODULES:
        module = import_module(f"runtime.families.{module_name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, FamilyAdapter) and value.__module__ == module.__name__:
                reg.register(value())
    return reg


def adapter_for(family: str) -> FamilyAdapter:
    """The adapter of ``family`` (``ModelPreset.family``); a miss names the valid families."""
    return registry().get(family)


__all__ = ["AttentionKind", "FAMILY_MODULES", "FamilyAdapter", "FamilyRegistry", "StepContext", "UnknownFamily",
           "adapter_for", "drop_learned_sigma", "image_size_px", "registry", "unpatchify"]
