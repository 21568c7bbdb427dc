"""Model families on the torch side, one adapter per module, found by name through :func:`registry`.

Each module ``runtime/families/<family>.py`` defines one :class:`FamilyAdapter` subclass
for the family of that name (the name ``ModelPreset.family`` holds and
``profiles/families/`` registers the torch-free spec under). To add a family, add such a
module: :func:`registry` finds it by walking this package (``base`` holds the interface).
"""

from __future__ import annotations

import pkgutil
from importlib import import_module

from runtime.families.base import (FamilyAdapter, FamilyRegistry, ProcessorKind, StepContext, UnknownFamily,
                                   drop_learned_sigma, image_size_px, unpatchify)


def family_modules() -> list[str]:
    """The family modules of this package, by name (every module but ``base``)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")


def registry() -> FamilyRegistry:
    """A fresh registry of every family adapter (no module-level state to mutate)."""
    reg = FamilyRegistry()
    for module_name in family_modules():
        module = import_module(f"{__name__}.{module_name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, FamilyAdapter) and value.__module__ == module.__name__:
                if value.name != module_name:
                    raise ValueError(f"{module.__name__} defines the adapter of family {value.name!r}: "
                                     f"name the module after it")
                reg.register(value())
    return reg


def adapter_for(family: str) -> FamilyAdapter:
    """The adapter of ``family`` (``ModelPreset.family``); a miss names the valid families."""
    return registry().get(family)


__all__ = ["FamilyAdapter", "FamilyRegistry", "ProcessorKind", "StepContext", "UnknownFamily", "adapter_for",
           "drop_learned_sigma", "family_modules", "image_size_px", "registry", "unpatchify"]
