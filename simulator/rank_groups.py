"""Rank arithmetic for hybrid parallel plans: which ranks form each parallel group.

Ranks are laid out as a row-major grid over the degrees in :data:`AXES` (each strategy's
``rank_order``, read from the registry), outermost first::

    data × cfg × pipefusion × (the stage-group axes) × ulysses × tensor

so the innermost axes (tensor, Ulysses and the other sequence splits: the chattiest) get consecutive ranks, which
the default placement puts on the nearest devices, and CFG and data parallel, which talk
once per step or never, are outermost.

Worked example, ``cfg=2, pipefusion=2, ulysses=2`` (8 ranks)::

    rank  cfg pipe uly
      0    0    0   0        ulysses groups: [0,1] [2,3] [4,5] [6,7]
      1    0    0   1        pipefusion groups (stage order): [0,2] [1,3] [4,6] [5,7]
      2    0    1   0        cfg groups: [0,4] [1,5] [2,6] [3,7]
      3    0    1   1
      4    1    0   0
      ...
"""

from __future__ import annotations

from itertools import product
from typing import Mapping

from simulator.strategies import STRATEGIES

AXES: tuple[str, ...] = STRATEGIES.axes()


def world_size(degrees: Mapping[str, int]) -> int:
    size = 1
    for axis in AXES:
        size *= degrees.get(axis, 1)
    return size


def coords(rank: int, degrees: Mapping[str, int]) -> dict[str, int]:
    """The index of ``rank`` along every axis (row-major, innermost axis last)."""
    out: dict[str, int] = {}
    for axis in reversed(AXES):
        size = degrees.get(axis, 1)
        out[axis] = rank % size
        rank //= size
    return {axis: out[axis] for axis in AXES}


def rank_of(coord: Mapping[str, int], degrees: Mapping[str, int]) -> int:
    """Inverse of :func:`coords`."""
    rank = 0
    for axis in AXES:
        rank = rank * degrees.get(axis, 1) + coord.get(axis, 0)
    return rank


def groups(axis: str, degrees: Mapping[str, int]) -> list[list[int]]:
    """Every group along ``axis``: ranks that differ only in that axis, in axis order."""
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; axes: {', '.join(AXES)}")
    others = [a for a in AXES if a != axis]
    out = []
    for fixed in product(*(range(degrees.get(a, 1)) for a in others)):
        base = dict(zip(others, fixed))
        out.append([rank_of({**base, axis: i}, degrees) for i in range(degrees.get(axis, 1))])
    return out


def group_of(rank: int, axis: str, degrees: Mapping[str, int]) -> list[int]:
    """The group along ``axis`` that contains ``rank``."""
    for group in groups(axis, degrees):
        if rank in group:
            return group
    raise ValueError(f"rank {rank} is outside a world of {world_size(degrees)}")
