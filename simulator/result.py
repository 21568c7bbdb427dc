"""What a simulation produces and prices: its events, a stage pass's cost, and the result.

These records sit apart from :mod:`simulator.engine` so that the stage actor and the
summary, which the engine imports, can name them without importing the engine back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulator.memory import MemoryBreakdown
from simulator.network import TrafficLog
from simulator.plan import Prediction
from simulator.strategies.base import CollectiveSpec
from simulator.trace import Trace


@dataclass(frozen=True)
class SimEvent:
    """One interval of one stage group's timeline (all its ranks do the same thing)."""

    start_s: float
    end_s: float
    actor: str
    cat: str
    name: str
    step: int | None = None
    patch: int | None = None
    stage: int | None = None
    ranks: tuple[int, ...] = ()
    args: tuple[tuple[str, Any], ...] = ()

    def brief(self) -> tuple:
        """``(actor, cat, step, patch, start, end)`` with times rounded: what timeline tests compare."""
        return (self.actor, self.cat, self.step, self.patch, round(self.start_s, 9), round(self.end_s, 9))


@dataclass(frozen=True)
class PassCost:
    """One stage pass over one item, priced once and reused for every step (costs do not change)."""

    compute_s: float
    embed_s: float
    final_s: float
    local_query_tokens: int
    specs: tuple[CollectiveSpec, ...]
    scheduler_s: float = 0.0
    """The scheduler step of the item (last stage only)."""
    overhead_s: float = 0.0
    """The pass's overhead beyond its timed layers (per block call of the stage)."""


@dataclass
class SimulationResult:
    """What :func:`simulate` predicts; ``prediction`` is what a plan file stores."""

    prediction: Prediction
    fits: bool
    oom: list[str]
    utilisation: dict[str, float]
    memory: dict[str, MemoryBreakdown]
    traffic: TrafficLog
    events: list[SimEvent] = field(default_factory=list)
    """Every recorded interval when ``record_trace`` (else empty)."""
    trace: Trace | None = None

    @property
    def latency_s(self) -> float:
        return self.prediction.latency_s

    def log(self) -> list[tuple]:
        return [e.brief() for e in self.events]
