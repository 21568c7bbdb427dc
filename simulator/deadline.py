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
periods to a clock that has already passed it). A run may also be stopped earlier, once the
work it has left shows that it cannot end before the limit (:meth:`Deadline.stop_now`,
:mod:`simulator.work_left`); it then reports that larger bound.
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
        self.bound_s: float | None = None
        """Set by :meth:`stop_now`: the lower bound the run was stopped with."""
        env.schedule(self.event, URGENT, max(at_s - env.now, 0.0))
        self.event.callbacks.append(self._fire)
        self.event.callbacks.append(StopSimulation.callback)  # ends whichever env.run is going on

    def stop_now(self, bound_s: float) -> None:
        """End the run at once: its latency is known to be at least ``bound_s`` (≥ ``at_s``;
        :mod:`simulator.work_left`). Same URGENT event, due now; the first call wins."""
        if self.bound_s is not None:
            return
        self.bound_s = bound_s
        env = self.event.env
        now = simpy.Event(env)
        now._ok, now._value = True, None
        now.callbacks.append(self._fire)
        now.callbacks.append(StopSimulation.callback)
        env.schedule(now, URGENT, 0.0)

    def _fire(self, _event: simpy.Event) -> None:
        # a flag, not ``event.processed``: simpy re-queues an event whose callback stopped the run
        self.fired = True

    def check(self) -> None:
        if self.fired:
            raise SlowerThan(self.at_s if self.bound_s is None else max(self.bound_s, self.at_s))


def arm(env: simpy.Environment, at_s: float | None) -> Deadline | None:
    """A :class:`Deadline` at ``at_s`` on ``env`` (None: no limit)."""
    return None if at_s is None else Deadline(env, at_s)
