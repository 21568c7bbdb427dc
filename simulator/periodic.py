"""Steady state inside one run: when the simulation's whole state at the start of a step equals its
state at the start of the step before, shifted in time, every later step repeats it exactly.

Why: a search simulates plans of 20-28 steps, and after the warm-up a PipeFusion pipeline
settles within a step or two; simulating the other steps again costs most of the search's
time. The simulation is deterministic and, past the warm-up, nothing depends on the step
index or the absolute time except through the state. So at each *step start* (the first
stage group, ``d0c0s0``, beginning the first unit of a step) :class:`StepWatch` takes a
:class:`Snapshot` of everything the future depends on, with times relative to now and step
indices relative to the step:

- every stage group's place in its schedule (unit index) and what it is waiting in
  (the compute, the collective or the send it is in, since when);
- every dependency event of the recent steps (created, fired, with what send time, waited on);
- every transfer in flight in the fair-share network (owner, bytes and latency left, rate);
- the overlapped collectives and CFG exchanges still running, and the sends not yet arrived.

If the snapshots at step starts ``k − 1`` and ``k`` are equal (floats to 1e-10 relative), the
run from ``k`` is the run from ``k − 1`` shifted by ``Δ``, one step later. A run of ``m`` steps
(``m > k``) and one of ``m + 1`` agree until ``d0c0s0`` ends its last unit (after step start
``k``), so the longer one is the shorter plus one period: ``Δ`` more latency and the totals
added between the two step starts. The engine then stops the run at ``m`` steps and adds
``T − m`` periods (:func:`extend`). Proof sketch and limits: docs/simulator.md.

Why deep pipelines settle late or not at all (diagnosed 2026-12-02 with :func:`difference` on the
15 plans the 64-GPU flux-dev search simulates; none of it is float drift or transient bookkeeping
in the snapshot, apart from the in-flight sends once compared as reprs, now compared like every
other float):

- a genuine transient: one stage group's slack shrinks by the same amount every step (pixart-alpha
  1024 px ``pipefusion=16, M=16`` on l40-2node: stage 3 drifts 2.1e-4 s a step for 8 steps until a
  slower cycle takes over and the step time changes from 15.24 to 15.45 ms);
- then a damped oscillation: under fair sharing the timeline converges geometrically, never exactly
  (the same plan: the differences fall from 1e-5 s to 2e-10 s over 16 steps, still above the tolerance
  at step 27);
- in several search plans no convergence at all within 28 steps: the upstream stages repeat, but
  the stages downstream of a shared NIC keep a jitter of ~1e-4 s on a 1.16 s step that neither
  grows nor decays (``pipefusion29×ulysses2``, ``pipefusion15×ulysses4``, ``pipefusion21×ulysses3``,
  ``pipefusion8×ulysses4`` with Ring degree 2, and ``pipefusion8×ulysses8`` under its second placement), nor
  repeats with a period of 2 to 8 steps.

So no exact cut can fire earlier on them; what bounds their cost is stopping a simulation that can
no longer win (the search's ``stop_after_s``) and the per-event cost.

Only the fair-share network without measured collective curves is watched (the FIFO model's
queue order and a curve's timer are state this does not capture); a run is never watched
while recording a trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import simpy

from simulator.network import FairShareNetwork
from simulator.schedule import Unit
from simulator.workload import Workload


class Simulation(Protocol):
    """What the watch reads of a running simulation (:class:`simulator.engine.Simulation`; the engine
    imports this module, so it is named by its shape)."""

    env: simpy.Environment
    work: Workload
    net: FairShareNetwork
    position: dict[str, int]
    where: dict[str, tuple]
    totals: dict[str, dict[str, float]]
    after_warmup: dict[str, dict[str, float]]
    warmup_end_s: dict[tuple[int, int], float]
    finished_s: float
    _events: dict[tuple, simpy.Event]
    _bg: dict[str, list[simpy.Process]]
    _own: dict[str, simpy.Process]
    _inflight: dict[int, tuple[tuple, simpy.Event]]

    def unit(self, index: int) -> Unit: ...
    def stop_after(self, steps: int) -> None: ...

REL_TOL = 1e-10
"""Two snapshot floats are equal within this relative difference (times: relative to the clock)."""
GIVE_UP_STEPS = 40
"""Steps after the warm-up after which a run stops looking for its steady state."""


class NotSettled(Exception):
    """Raised out of a run told to stop when it has not settled by :data:`GIVE_UP_STEPS`."""


@dataclass
class Snapshot:
    step: int
    now: float
    state: tuple
    totals: dict[str, dict[str, float]]
    after_warmup: dict[str, dict[str, float]]
    traffic: tuple


@dataclass
class StepWatch:
    """Takes a snapshot at each step start of one simulation and stops it once two agree."""

    sim: Simulation
    give_up: bool = False
    """Raise :class:`NotSettled` when no steady state is found in time (the run is too long to finish)."""
    previous: Snapshot | None = None
    found: tuple[Snapshot, Snapshot] | None = None
    stopped_at_steps: int = 0

    def step_began(self, step: int, index: int) -> None:
        sim = self.sim
        work = sim.work
        if self.found is not None:
            return
        settled_from = max(work.warmup_steps, 1) + 1
        if step < settled_from:
            return
        if step > settled_from + GIVE_UP_STEPS:
            if self.give_up:
                raise NotSettled(step)
            return
        snap = self._snapshot(step, index)
        if snap is None:
            self.previous = None
            return
        prev = self.previous
        self.previous = snap
        if prev is None or prev.step != step - 1 or not same(prev.state, snap.state, snap.now):
            return
        # stop after step m - 1 = the furthest step any stage group has begun, at least this one
        furthest = max(sim.unit(i).step for i in sim.position.values())
        m = max(step, furthest) + 1
        if m >= work.steps:
            return
        self.found = (prev, snap)
        self.stopped_at_steps = m
        sim.stop_after(m)

    # -- the state ------------------------------------------------------------------------
    def _snapshot(self, step: int, index: int) -> Snapshot | None:
        """The state at the start of ``step`` (None when it cannot be compared: warm-up not over)."""
        sim, work = self.sim, self.sim.work
        now = sim.env.now
        warm = max(work.warmup_steps, 1)
        replicas = work.degrees["data"] * work.degrees["cfg"]
        if len(sim.warmup_end_s) < replicas and work.warmup_steps > 0:
            return None
        warm_end = max(sim.warmup_end_s.values(), default=0.0)
        actors = []
        lowest = lowest_first = step
        for actor in work.actors:
            label = actor.label
            position = sim.position.get(label)
            if position is None:
                return None
            unit = sim.unit(position)
            if unit.step < warm or (actor.stage == 0 and unit.step < warm + 1):
                return None  # still in the warm-up's (or the first step's) own costs and inputs
            lowest = min(lowest, unit.step)
            if actor.stage == 0:
                lowest_first = min(lowest_first, unit.step)
            where = sim.where.get(label, ())
            since = [x for x in where if type(x) is float]
            if any(t < warm_end for t in since):
                return None  # an interval that straddles the warm-up's end is clipped differently
            actors.append((label, position - index, self._relative(where, step, now),
                           _processes(sim._bg.get(label, ())), _processes((sim._own[label],) if label in sim._own
                                                                          else ())))
        events = []
        for key, ev in sim._events.items():
            if key[-2] < (lowest_first - 1 if key[0] == "ret" else lowest):
                continue  # every stage group is past its consumer (stage 0 reads a return a step later)
            fired = ev.triggered
            events.append((key[:-2] + (key[-2] - step, key[-1]), fired, ev.processed,
                           ev.value - now if fired else None, 0 if ev.processed else len(ev.callbacks)))
        events.sort(key=repr)
        # compared like every other float (to REL_TOL), not as reprs: a send's start time relative to
        # now differs in its last bits between step starts (seen once in 28 steps of pipefusion8×ulysses8)
        sends = sorted(((self._relative(owner, step, now), done.triggered, done.processed)
                        for owner, done in sim._inflight.values()), key=repr)
        network = sim.net.state(now, lambda owner: self._relative(owner, step, now))
        traffic = sim.net.traffic
        return Snapshot(step, now, (tuple(actors), tuple(events), tuple(sends), tuple(network)),
                        {k: dict(v) for k, v in sim.totals.items()},
                        {k: dict(v) for k, v in sim.after_warmup.items()},
                        (dict(traffic.by_route_class), dict(traffic.sent_by_device), dict(traffic.received_by_device),
                         dict(traffic.by_link), traffic.transfers))

    @staticmethod
    def _relative(item: Any, step: int, now: float) -> Any:
        """Times relative to ``now``, dependency keys' steps relative to ``step``."""
        if type(item) is float:
            return item - now
        if type(item) is tuple:
            if item and item[0] in ("in", "ret", "skip", "cfg") and len(item) >= 5 and type(item[-2]) is int:
                return item[:-2] + (item[-2] - step, item[-1])
            return tuple(StepWatch._relative(x, step, now) for x in item)
        return item


def _processes(procs: Any) -> tuple:
    out = []
    for p in procs:
        target = getattr(p, "_target", None)
        out.append((p.triggered, p.processed, p.is_alive and type(target).__name__,
                    p.is_alive and target is not None and target.triggered))
    return tuple(out)


def same(a: Any, b: Any, now: float) -> bool:
    """Equal structure, equal values, floats within :data:`REL_TOL` (of the clock for times)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return abs(a - b) <= REL_TOL * (abs(a) + abs(b) + max(now, 1.0))
    if type(a) in (tuple, list):
        return len(a) == len(b) and all(same(x, y, now) for x, y in zip(a, b))
    return a == b


def difference(a: Snapshot, b: Snapshot) -> str | None:
    """Where two snapshots first differ beyond :func:`same`'s tolerance, in words (None: they agree):
    why a run does not settle. ``actors[3] (d0c0s3)[2][2]: -0.000657 vs -0.000447`` reads: the fourth
    stage group's wait state, its third field (a start time relative to the step start)."""
    parts = ("actors", "events", "sends", "network")
    for name, x, y in zip(parts, a.state, b.state):
        path = _first_difference(x, y, b.now, ())
        if path is not None:
            where, (u, v) = path
            label = f"{name}[{where[0]}]" if where else name
            if name == "actors" and where:
                label += f" ({x[where[0]][0]})"
            label += "".join(f"[{i}]" for i in where[1:])
            return f"{label}: {u!r} vs {v!r}"
    return None


def _first_difference(a: Any, b: Any, now: float, path: tuple) -> tuple[tuple, tuple] | None:
    if type(a) is not type(b):
        return path, (a, b)
    if type(a) in (tuple, list):
        if len(a) != len(b):
            return path, (f"{len(a)} items", f"{len(b)} items")
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, now, path + (i,))
            if found is not None:
                return found
        return None
    return None if same(a, b, now) else (path, (a, b))


def extend(sim: Simulation, watch: StepWatch, steps: int) -> None:
    """Add ``steps − m`` periods to ``sim`` (stopped at ``m`` steps) in place: its clock, every
    stage group's totals and the traffic tables grow by what one period added."""
    prev, snap = watch.found  # type: ignore[misc]
    more = steps - watch.stopped_at_steps
    sim.finished_s += more * (snap.now - prev.now)
    for table, before, after in ((sim.totals, prev.totals, snap.totals),
                                 (sim.after_warmup, prev.after_warmup, snap.after_warmup)):
        for label, cats in table.items():
            for cat in set(after[label]) | set(before[label]):
                add = after[label].get(cat, 0.0) - before[label].get(cat, 0.0)
                if add:
                    cats[cat] = cats.get(cat, 0.0) + more * add
    traffic = sim.net.traffic
    tables = (traffic.by_route_class, traffic.sent_by_device, traffic.received_by_device, traffic.by_link)
    for table, before, after in zip(tables, prev.traffic[:4], snap.traffic[:4]):
        for key in set(after) | set(before):
            add = after.get(key, 0) - before.get(key, 0)
            if add:
                table[key] = table.get(key, 0) + more * add
    traffic.transfers += more * (snap.traffic[4] - prev.traffic[4])
