"""Strategies are found by name; duplicates and unknown names are refused clearly."""

from __future__ import annotations

import pytest

from simulator.errors import SimulatorError
from simulator.strategies import STRATEGIES, registry
from simulator.strategies.base import Registry
from simulator.strategies.data import Data


def test_every_strategy_is_registered():
    assert registry().names() == ["cfg", "data", "distrifusion", "pipefusion", "ring", "serial", "tensor",
                                  "ulysses"]
    assert [s.name for s in registry().with_role("stage")] == ["distrifusion", "ring", "ulysses", "tensor"]


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(SimulatorError, match="unknown strategy 'usp'; strategies: cfg, data, distrifusion, pipefusion, ring"):
        registry().get("usp")


def test_duplicates_are_refused():
    reg = Registry()

    class A(Data):
        name = "a"
        axis = "a"
        rank_order = 1

    class B(Data):
        name = "a"
        axis = "b"
        rank_order = 2

    reg.register(A)
    with pytest.raises(SimulatorError, match="registered twice"):
        reg.register(B)


def test_an_axis_or_rank_position_claimed_twice_is_refused():
    reg = Registry()
    reg.register(Data)

    class SameAxis(Data):
        name = "replicas"
        rank_order = 11

    class SamePosition(Data):
        name = "copies"
        axis = "copies"

    with pytest.raises(SimulatorError, match="axis 'data' is claimed by 'data' and 'replicas'"):
        reg.register(SameAxis)
    with pytest.raises(SimulatorError, match="rank position 10 is claimed by 'data' and 'copies'"):
        reg.register(SamePosition)


def test_the_shared_registry_is_frozen():
    class Late(Data):
        name = "late"
        axis = "late"
        rank_order = 99

    with pytest.raises(SimulatorError, match="frozen"):
        STRATEGIES.register(Late)
