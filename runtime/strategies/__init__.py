"""The runtime strategies, one module per parallel axis, found by the axis name.

``runtime/strategies/<axis>.py`` defines ``STRATEGY`` (see :mod:`runtime.strategies.base`
for what each kind provides). Nothing lists them: :func:`axes` reads this package's
modules, so adding ``ring.py`` registers Ring. The simulator's strategy modules point at
these by ``runtime_module = "runtime.strategies.<axis>"``.

:func:`for_plan` picks a rank's three strategies: the replica choice, the guidance, and the
one loop the plan activates (:data:`DEFAULT_LOOP` when none is active).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from runtime.strategies.base import GuidanceStrategy, LoopStrategy, ReplicaStrategy, RuntimeStrategy
from simulator.plan import ParallelPlan
from simulator.rank_groups import AXES

if TYPE_CHECKING:
    from runtime.attention.sequence_group import SequenceGroup
    from runtime.dist_context import DistContext

DEFAULT_LOOP = "serial"
"""The loop of a plan that activates no loop axis: diffusers' own forward, one pass per step."""

_NOT_STRATEGIES = frozenset({"base"})


class UnknownStrategy(ValueError):
    """An axis with no runtime module."""


def axes() -> tuple[str, ...]:
    """Every axis with a runtime module, sorted."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_STRATEGIES))


def strategy(axis: str) -> RuntimeStrategy:
    """The ``STRATEGY`` of ``runtime/strategies/<axis>.py``."""
    known = axes()
    if axis not in known:
        raise UnknownStrategy(f"no runtime strategy for axis {axis!r}; runtime strategies: {', '.join(known)}")
    found = importlib.import_module(f"{__name__}.{axis}").STRATEGY
    if found.axis != axis:
        raise UnknownStrategy(f"runtime/strategies/{axis}.py registers axis {found.axis!r}, not {axis!r}")
    return found


@dataclass(frozen=True)
class RankStrategies:
    """The strategies one rank of a plan runs with."""

    replicas: ReplicaStrategy
    guidance: GuidanceStrategy
    loop: LoopStrategy


def _only(kind: type, what: str) -> RuntimeStrategy:
    found = [s for s in map(strategy, axes()) if isinstance(s, kind)]
    if len(found) != 1:
        raise UnknownStrategy(f"one runtime strategy must provide {what}; found: "
                              f"{', '.join(s.axis for s in found) or 'none'}")
    return found[0]


def for_plan(plan: ParallelPlan) -> RankStrategies:
    """The replica, guidance and loop strategies of ``plan``.

    Sequence-parallel axes (``sequence = True``: Ulysses, Ring) compose: alone or together
    (USP) they run their band loop; with another loop active (PipeFusion, whose
    ``takes_sequence`` says so) that loop runs and takes their attention hook. Any other pair
    of loops is refused."""
    active = [s for s in map(strategy, axes())
              if isinstance(s, LoopStrategy) and s.axis != DEFAULT_LOOP and s.active(plan)]
    sequence = [s for s in active if getattr(s, "sequence", False)]
    others = [s for s in active if s not in sequence]
    if len(others) > 1 or (others and sequence and not getattr(others[0], "takes_sequence", False)):
        raise UnknownStrategy(f"pfrun runs one loop per rank; this plan needs {' and '.join(s.axis for s in active)}")
    loop = others[0] if others else sequence[0] if sequence else strategy(DEFAULT_LOOP)
    return RankStrategies(replicas=_only(ReplicaStrategy, "the replica choice"),  # type: ignore[arg-type]
                          guidance=_only(GuidanceStrategy, "the guidance"),  # type: ignore[arg-type]
                          loop=loop)  # type: ignore[arg-type]


def sequence_axes(degrees: Mapping[str, int]) -> list[RuntimeStrategy]:
    """The active sequence-parallel strategies (``sequence = True``), in mesh order, outermost first."""
    found = {s.axis: s for s in map(strategy, axes()) if getattr(s, "sequence", False)}
    return [found[a] for a in AXES if a in found and degrees.get(a, 1) > 1]


def sequence_group(dist: DistContext) -> SequenceGroup:
    """This rank's sequence-parallel group: the attention hook of the band loop and of PipeFusion."""
    from runtime.attention.sequence_group import SequenceGroup

    return SequenceGroup(dist, [s.member(dist) for s in sequence_axes(dist.degrees)])  # type: ignore[attr-defined]
