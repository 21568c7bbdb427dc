"""What ``pfrun`` can execute today, as pure data and one pure function (no torch).

It sits beside the plan format because it is part of the same contract ("a plan the
planner can emit is a plan the runtime can execute"): the planner marks the plans it emits
as runnable or not with :func:`unrunnable_reason`, and the runtime calls the same function
before it starts any process, so a plan is refused with the same one-line reason
everywhere, and neither package imports the other. The runtime's tests check that the
executors really run every case this says they run.
"""

from __future__ import annotations

from profiles.catalog.models import ModelPreset
from simulator.plan import ParallelPlan, plan_facts
from simulator.strategies import STRATEGIES

RUNNABLE_AXES: tuple[str, ...] = tuple(s.axis for s in STRATEGIES if s.axis and s.runtime_module)
"""Parallel axes the runtime executes (each strategy's ``runtime_module``); the others are refused."""


def unrunnable_reason(plan: ParallelPlan, model: ModelPreset) -> str | None:
    """Why ``pfrun`` cannot execute ``plan`` (one line), or None when it can.

    ``plan`` is assumed to pass :func:`simulator.plan.validate`; this adds only the limits of
    the runtime itself: axes without a runtime module (with their ``not_executable`` reasons),
    then each strategy's :meth:`~simulator.strategies.base.Strategy.runtime_limits`, innermost
    axis first (the stage group's limits before the pipeline's).
    """
    degrees = plan.degrees.as_dict()
    missing = [(s, n) for s, n in STRATEGIES.active(degrees) if s.runtime_module is None]
    if missing:
        return (f"degrees: {', '.join(f'{s.axis}({n})' for s, n in missing)} not executed by pfrun yet "
                f"({'; '.join(s.not_executable for s, _ in missing)}); it runs {', '.join(RUNNABLE_AXES)}")
    facts = plan_facts(plan, model)
    for strategy in reversed(list(STRATEGIES)):
        reason = strategy.runtime_limits(degrees.get(strategy.axis, 1), facts, model)  # type: ignore[arg-type]
        if reason:
            return reason
    return None
