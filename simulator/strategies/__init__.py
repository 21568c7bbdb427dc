"""Parallel strategies, one per module, found by :func:`registry` (no list of them to keep).

Every module of this package except :mod:`~simulator.strategies.base` defines one
:class:`~simulator.strategies.base.Strategy` subclass: the replica axes ``data`` and
``cfg``, the pipeline ``pipefusion``, the stage strategies, and ``serial``, what a stage
group degenerates to when no axis is above 1. :data:`STRATEGIES` is the frozen registry
everything else reads (the ``Degrees`` fields, the rank order, the rules, the costs); to add
a strategy, add a module here.
"""

from __future__ import annotations

import inspect
import pkgutil
from importlib import import_module

from simulator.strategies.base import Registry, Strategy

NOT_STRATEGIES = frozenset({"base"})
"""Modules of this package that hold no strategy."""


def registry() -> Registry:
    """A fresh registry of every strategy module in this package."""
    reg = Registry()
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in NOT_STRATEGIES or info.name.startswith("_"):
            continue
        module = import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, Strategy) and value.__module__ == module.__name__ \
                    and not inspect.isabstract(value):
                reg.register(value)
    return reg


STRATEGIES: Registry = registry().frozen()
"""The registry of every strategy, read-only."""

__all__ = ["STRATEGIES", "Registry", "Strategy", "registry"]
