"""The two registries meet: every simulator strategy names a runtime module that exists (or says why
not, and pfrun says the same), and every torch-free family spec has a runtime adapter.

Each side walks its own registry in its own tests (tests/simulator/test_strategy_plugins.py,
tests/runtime/test_strategy_registry.py, tests/profiles/test_family_plugins.py,
tests/runtime/test_family_adapters.py); this file checks that the halves fit together.
"""

from __future__ import annotations

import importlib

import pytest

from profiles.catalog.models import load_model
from profiles.families import default_registry
from runtime.families import adapter_for
from runtime.families import registry as adapter_registry
from runtime.strategies import axes as runtime_axes
from runtime.strategies import strategy as runtime_strategy
from simulator.plan import ParallelPlan
from simulator.runnable import unrunnable_reason
from simulator.strategies import STRATEGIES
from tests.runtime.test_family_adapters import NO_ADAPTER_YET


@pytest.mark.parametrize("unit", [STRATEGIES.get(n) for n in STRATEGIES.names()], ids=lambda s: s.name)
def test_every_strategy_has_a_runtime_module_or_a_reason_pfrun_reports(unit):
    if unit.runtime_module is None:
        assert unit.not_executable.strip(), f"{unit.name}: neither a runtime module nor a reason"
        assert unit.name not in runtime_axes()
        plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=4,
                            degrees={unit.axis: 2})
        assert unit.not_executable in (unrunnable_reason(plan, load_model("pixart-alpha")) or "")
        return
    assert unit.runtime_module == f"runtime.strategies.{unit.name}"
    module = importlib.import_module(unit.runtime_module)
    assert module.STRATEGY is runtime_strategy(unit.name)
    assert module.STRATEGY.axis == unit.name


def test_every_runtime_strategy_belongs_to_a_simulator_strategy():
    declared = {n for n in STRATEGIES.names() if STRATEGIES.get(n).runtime_module is not None}
    assert set(runtime_axes()) == declared


@pytest.mark.parametrize("name", sorted(set(default_registry().names()) - NO_ADAPTER_YET))
def test_every_family_spec_has_a_runtime_adapter(name):
    assert adapter_for(name).name == name


def test_the_adapters_are_exactly_the_specs():
    """Every spec but those pfrun does not run yet (issue 17's HunyuanVideo and FLUX.2)."""
    assert sorted(adapter_registry().names()) == sorted(set(default_registry().names()) - NO_ADAPTER_YET)
