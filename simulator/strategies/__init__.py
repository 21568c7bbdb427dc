"""Parallel strategies, one per module, found by name through :func:`registry`.

Stage strategies (how a stage group shares a pass) live in ``serial``, ``ulysses``,
``ring``, ``tensor_parallel`` and ``distrifusion``; the pipeline schedule is
``pipefusion``; the replica axes are ``cfg`` and ``data``. To add a strategy, add a module
with one class and name it in :data:`STAGE_STRATEGY_MODULES`.
"""

from __future__ import annotations

from importlib import import_module

from simulator.strategies.base import Registry, StageStrategy

STAGE_STRATEGY_MODULES = ("serial", "ulysses", "ring", "tensor_parallel", "distrifusion")


def registry() -> Registry:
    """A fresh registry of every stage strategy (no module-level state to mutate)."""
    reg = Registry()
    for module_name in STAGE_STRATEGY_MODULES:
        module = import_module(f"simulator.strategies.{module_name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, StageStrategy) and value is not StageStrategy \
                    and value.__module__ == module.__name__:
                reg.register(value)
    return reg


__all__ = ["registry", "Registry", "StageStrategy"]
