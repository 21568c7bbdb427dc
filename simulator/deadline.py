"""A limit on one run's simulated clock: a search stops a simulation that can no longer win.

Why: a search simulates several placements of one shape and keeps the fastest, and ranks only
its best K shapes exactly; once a run's clock has passed the latency it has to beat, finishing
it changes nothing the search reports. :func:`simulator.engine.simulate` takes
``stop_after_s`` and raises :class:`SlowerThan` when the clock reaches it before the run ends.

The limit is one extra simpy event at ``at_s`` with simpy's URGENT priority (what
``env.run(until=number)`` schedules). simpy orders its queue by (time, priority, event id), so
the extra event reorders nothing: a run that finishes before the limit is event for event the
run without one, and its result is identical. When it fires, no event at ``at_s`` has been
processed, so the run's latency is at least ``at_s`` (the steady-state cut only adds whole
periods to a clock that has already passed it).
"""

from __future__ import annotations

import simpy
from simpy.core import StopSimulation
from simpy.events import URGENT

from simulator.errors import SimulatorError


class SlowerThan(SimulatorError):
    """The run's clock reached ``bound_s`` before it finished: its latency is at least ``bound_s``."""

    def __init__(self, bound_s: float) -> None:
        super().__init__(f"slower than {bound_s:.6g} s; stopped")
        self.bound_s = bound_s


class Deadline:
    """The limit event of one environment; :meth:`check` raises once it has fired."""

    def __init__(self, env: simpy.Environment, at_s: float) -> None:
        self.at_s = at_s
        self.event = simpy.Event(env)
        self.event._ok = True  # a triggered event, as simpy's own ``run(until=number)`` builds it
        self.event._value = None
        self.fired = False
        env.schedule(self.event, URGENT, max(at_s - env.now, 0.0))
        self.event.callbacks.append(self._fire)
        self.event.callbacks.append(StopSimulation.callback)  # ends whichever env.run is going on

    def _fire(self, _event: simpy.Event) -> None:
        # a flag, not ``event.processed``: simpy re-queues an event whose callback stopped the run
        self.fired = True

    def check(self) -> None:
        if self.fired:
            raise SlowerThan(self.at_s)


def arm(env: simpy.Environment, at_s: float | None) -> Deadline | None:
    """A :class:`Deadline` at ``at_s`` on ``env`` (None: no limit)."""
    return None if at_s is None else Deadline(env, at_s)
