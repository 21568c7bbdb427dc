"""When the search may stop a shape's simulation early without changing anything it reports.

Why: the search simulates its ``simulate_top`` best-estimated shapes, best estimate first,
and most of its time goes into runs of shapes that end up ranked below the best few. Only
the best ``K`` (``SearchSettings.exact_top``) are ranked exactly; a later shape's run can
stop once its simulated clock passes every latency it would have to beat to matter:

- the ``K``-th best objective value of the shapes simulated to the end so far (it can only
  fall as more finish, so a shape slower than it now is slower than the final ``K``-th);
- with ``best_per_device_count`` (capacity planning), the fastest finished latency of its
  device count (capacity reads each count's fastest simulated plan), none yet: no stop;
- for a plan ``pfrun`` runs, the best finished runnable plan's value (``pfplan search`` writes
  the best runnable plan when the best is not), none yet: no stop.

The limit is that value as a latency plus a relative hair (``MARGIN``), so a stopped shape is
strictly slower than all three and no tie-break can lift it; it is reported with that lower
bound only. Every finished shape's numbers are the full simulation's
(:mod:`simulator.deadline`: the limit reorders no event).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Literal, Protocol

from simulator.plan import ParallelPlan


class Candidate(Protocol):
    """What the limits read of a search candidate (:class:`planner.search.Candidate`, which imports this module)."""

    plan: ParallelPlan
    runnable_reason: str | None

    @property
    def latency_s(self) -> float: ...

    def objective_key(self, objective: Literal["latency", "throughput"]) -> tuple[float, int]: ...

MARGIN = 1e-9
"""Relative hair added to a limit: a stopped shape is slower than it by more than float rounding."""


@dataclass
class StopLimits:
    """What the shapes finished so far set as the bar a later shape's run must beat."""

    objective: Literal["latency", "throughput"]
    exact_top: int | None
    """K; None: never stop a shape (every chosen shape is simulated to the end)."""
    per_device_count: bool
    values: list[float] = field(default_factory=list)
    """Objective values of the finished shapes, sorted."""
    fastest_by_size: dict[int, float] = field(default_factory=dict)
    """Device count → fastest finished latency."""
    best_runnable: float | None = None
    """Best objective value of a finished plan pfrun runs."""

    def add(self, cand: Candidate) -> None:
        """Count a shape simulated to the end."""
        value = cand.objective_key(self.objective)[0]
        bisect.insort(self.values, value)
        size = cand.plan.world_size
        if size not in self.fastest_by_size or cand.latency_s < self.fastest_by_size[size]:
            self.fastest_by_size[size] = cand.latency_s
        if cand.runnable_reason is None and (self.best_runnable is None or value < self.best_runnable):
            self.best_runnable = value

    def limit_s(self, cand: Candidate) -> float | None:
        """The simulated time past which ``cand``'s shape cannot matter (None: it must be run to the end)."""
        if self.exact_top is None or self.exact_top < 1 or len(self.values) < self.exact_top:
            return None
        images = cand.plan.degrees.images_per_generation()
        limits = [self._seconds(self.values[self.exact_top - 1], images)]
        if self.per_device_count:
            fastest = self.fastest_by_size.get(cand.plan.world_size)
            limits.append(None if fastest is None else fastest * (1 + MARGIN))
        if cand.runnable_reason is None:
            limits.append(None if self.best_runnable is None else self._seconds(self.best_runnable, images))
        if any(limit is None for limit in limits):
            return None
        return max(limit for limit in limits if limit is not None)

    def _seconds(self, value: float, images: int) -> float | None:
        """The latency at which a plan making ``images`` per generation reaches objective ``value``, plus the hair."""
        if self.objective == "latency":
            return value * (1 + MARGIN)
        if value >= 0:  # throughput values are −images/s; 0 only for a zero latency
            return None
        return images / -value * (1 + MARGIN)
