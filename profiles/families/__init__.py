"""Model families as plug-ins: one torch-free module per family, found by name.

Each module here (``pixart``, ``sd3``, ``flux``, ``dit``, ``hunyuan``) defines ``SPEC``, a
:class:`FamilySpec`: the family's diffusers classes, how its config becomes an
:class:`~profiles.catalog.architecture.Architecture`, its block kinds and their FLOP formulas, its
token geometry and output size, and its pipeline's text encoders, VAE and guidance. The
catalog, the cost models and the simulator ask the spec; nothing outside these modules
names a family. :mod:`profiles.families.blocks` holds the formulas several families share.

To add a family, write ``profiles/families/<name>.py`` defining ``SPEC`` (and its runtime
adapter, ``runtime/families/<name>.py``); :func:`default_registry` finds it.
"""

from __future__ import annotations

from functools import cache

from profiles.families.registry import FamilyRegistry, discover
from profiles.families.spec import BlockKind, FamilySpec, Guidance, TextEncoder, Tokens, Vae

__all__ = ["BlockKind", "FamilyRegistry", "FamilySpec", "Guidance", "TextEncoder", "Tokens", "Vae",
           "default_registry", "get_family"]


@cache
def default_registry() -> FamilyRegistry:
    """Every family module of this package (imported once; the registry is immutable)."""
    return discover(__name__)


def get_family(name: str) -> FamilySpec:
    """The spec of a registered family; an :class:`~profiles.errors.InputError` naming the choices otherwise."""
    return default_registry().get(name)
