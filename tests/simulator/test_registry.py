"""Strategies are found by name; duplicates and unknown names are refused clearly."""

from __future__ import annotations

import pytest

from simulator.errors import SimulatorError
from simulator.strategies import registry
from simulator.strategies.base import Registry, StageStrategy


def test_every_stage_strategy_is_registered():
    assert registry().names() == ["distrifusion", "ring", "serial", "tensor", "ulysses"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(SimulatorError, match="unknown strategy 'usp'; strategies: distrifusion, ring, serial"):
        registry().get("usp")


def test_duplicates_are_refused():
    reg = Registry()

    class A(StageStrategy):
        name = "a"

    class B(StageStrategy):
        name = "a"

    reg.register(A)
    with pytest.raises(SimulatorError, match="registered twice"):
        reg.register(B)
