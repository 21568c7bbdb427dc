"""The family registry: family specs by name and by diffusers class, found by walking a package.

A family is registered by being a module of :mod:`profiles.families` that defines
``SPEC``, a :class:`~profiles.families.spec.FamilySpec`: :func:`discover` imports every
such module, so adding a family touches no other file. A :class:`FamilyRegistry` is an
immutable value; :meth:`FamilyRegistry.with_family` returns a new one (tests register
toy families that way, and hand the registry to
``ModelPreset.model_validate(..., context={"families": registry})``).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Iterator

from profiles.errors import InputError
from profiles.families.spec import FamilySpec


@dataclass(frozen=True)
class FamilyRegistry:
    """Family specs, each name and each diffusers class at most once."""

    specs: tuple[FamilySpec, ...] = ()

    def __post_init__(self) -> None:
        for attribute in ("name", "diffusers_class"):
            seen: set[str] = set()
            for spec in self.specs:
                value = getattr(spec, attribute)
                if value in seen:
                    raise ValueError(f"family {attribute} {value!r} is registered twice")
                seen.add(value)

    def with_family(self, spec: FamilySpec) -> FamilyRegistry:
        """This registry plus ``spec`` (a ``ValueError`` if its name or class is taken)."""
        return FamilyRegistry((*self.specs, spec))

    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def __contains__(self, name: object) -> bool:
        return any(spec.name == name for spec in self.specs)

    def __iter__(self) -> Iterator[FamilySpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def get(self, name: str) -> FamilySpec:
        """The spec of family ``name``; an :class:`InputError` listing the valid names otherwise."""
        for spec in self.specs:
            if spec.name == name:
                return spec
        raise InputError(f"unknown model family {name!r}; choices: {', '.join(self.names())}", field="family")

    def by_class(self, class_name: str) -> FamilySpec:
        """The spec whose diffusers transformer class is ``class_name``."""
        for spec in self.specs:
            if spec.diffusers_class == class_name:
                return spec
        raise InputError(f"unsupported diffusers class {class_name!r}; supported: "
                         f"{', '.join(spec.diffusers_class for spec in self.specs)}", field="_class_name")


def discover(package: str) -> FamilyRegistry:
    """The registry of every module of ``package`` that defines ``SPEC``, in module-name order."""
    root = importlib.import_module(package)
    specs = []
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package}.{info.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, FamilySpec):
            if spec.name != info.name:
                raise ValueError(f"{package}.{info.name} defines family {spec.name!r}: name the module after it")
            specs.append(spec)
    return FamilyRegistry(tuple(specs))
