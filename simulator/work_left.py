"""The least time a stage group still needs: a lower bound on a run's latency while it runs.

Why: a search stops a simulation once its clock passes the latency it has to beat
(:mod:`simulator.deadline`), but a deep pipeline that will lose by a few per cent only passes
that bar in its last steps, so it is simulated almost whole (at 128 L40s, flux-dev 4096 px:
7 of the 15 simulations were stopped, and they took more than half the simulating time). A
stage group works through its units one after the other, and every unit holds it for at
least its timers (first pass, embeddings, the blocks, the pass overhead, and on the last
stage the final layer and the scheduler step; the VAE decode after the last step): waits,
sends and blocking collectives only add to that. So at any moment the run cannot end before
``now + Σ`` of the timers the group has left, and once that passes the bar the run cannot
win. The run is then stopped with that bound, which is never below the bar, so a run that
would have finished under the bar is never stopped, and the search's answers are those of
the run without the bound (tests/simulator/test_work_left.py).

The sum is computed in closed form: after the first step that is neither warm-up nor the
generation's first, every step costs the same per patch.
"""

from __future__ import annotations

from typing import Callable

from simulator.result import PassCost
from simulator.schedule import unit_at
from simulator.workload import Actor, Workload

PassPrice = Callable[..., PassCost]
"""``(stage, item, *, warmup, first) → PassCost``: :meth:`simulator.engine.Simulation.pass_cost`."""

SLACK = 1e-9
"""The bound is lowered by this relative amount: a sum of timers in another order may differ from
the clock's own in the last bits."""


class WorkLeft:
    """Least remaining timer seconds per stage group, from a unit index on."""

    def __init__(self, work: Workload, pass_price: PassPrice, bounds: list[tuple[int, int]], *,
                 compute_scale: float, first_pass_s: float, vae_s: float) -> None:
        self.work, self._price, self._bounds = work, pass_price, bounds
        self._scale, self._first_pass_s, self._vae_s = compute_scale, first_pass_s, vae_s
        self._warm = min(work.warmup_steps, work.steps)
        self._per_step = 1 if work.patches == 1 else work.patches
        self.units = self._warm + (work.steps - self._warm) * self._per_step
        """Units of the whole run, whatever the steady-state cut later shortens."""
        # the first unit whose cost repeats every step: past the warm-up and past step 0
        self._generic = self._warm if self._warm >= 1 else min(self._per_step, self.units)
        self._tables: dict[int, tuple[list[float], list[float], float]] = {}

    def _unit_s(self, stage: int, index: int) -> float:
        unit = unit_at(index, self._warm, self._bounds)
        cost = self._price(stage, unit.patch, warmup=unit.step < self.work.warmup_steps, first=unit.step == 0)
        s = cost.compute_s + cost.overhead_s
        if stage == 0:
            s += cost.embed_s
        if stage == self.work.stages - 1:
            s += cost.final_s + cost.scheduler_s
        if index == 0:
            s += self._first_pass_s
        return s * self._scale

    def _table(self, stage: int) -> tuple[list[float], list[float], float]:
        """(suffix sums of the units before the repeating part, suffix sums of one repeating step's
        patches, one repeating step's sum) for ``stage``."""
        table = self._tables.get(stage)
        if table is None:
            head = [self._unit_s(stage, i) for i in range(self._generic)]
            step = ([self._unit_s(stage, self._generic + p) for p in range(self._per_step)]
                    if self._generic < self.units else [])
            table = self._tables[stage] = (_suffix(head), _suffix(step), sum(step))
        return table

    def least_s(self, actor: Actor, index: int) -> float:
        """Timer seconds ``actor`` has left from the start of unit ``index`` of the whole run."""
        head, step, per_step = self._table(actor.stage)
        generic_units = self.units - self._generic
        if index < self._generic:
            left = head[index] + (generic_units // self._per_step) * per_step
        else:
            done, offset = divmod(index - self._generic, self._per_step)
            whole = (generic_units - (done + 1) * self._per_step) // self._per_step
            left = step[offset] + max(whole, 0) * per_step
        if actor.stage == self.work.stages - 1 and actor.cfg == 0:
            left += self._vae_s
        return left


def _suffix(values: list[float]) -> list[float]:
    """``[a, b, c]`` → ``[a+b+c, b+c, c, 0]``."""
    out = [0.0] * (len(values) + 1)
    for i in range(len(values) - 1, -1, -1):
        out[i] = out[i + 1] + values[i]
    return out
