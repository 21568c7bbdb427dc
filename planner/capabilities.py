"""What ``pfrun`` can execute today, as the planner sees it.

The search ranks every strategy the simulator models, but a plan it writes must say
whether the runtime can run it. The runtime owns that answer
(``runtime/capabilities.py: unrunnable_reason(plan, model)``, torch-free); until that
module exists on the branch this code runs from, :func:`local_unrunnable_reason` gives the
same contract from the runtime issue's first milestone: serial, PipeFusion, CFG and data
parallel run; DistriFusion, Ring, Ulysses and tensor parallel do not yet.
"""

from __future__ import annotations

from typing import Callable

from profiles.models import ModelPreset
from simulator.plan import ParallelPlan

RUNNABLE_AXES = ("data", "cfg", "pipefusion")
"""Degrees the first runtime milestone executes (serial is all degrees 1)."""


def local_unrunnable_reason(plan: ParallelPlan, model: ModelPreset) -> str | None:
    """Why ``pfrun`` cannot run ``plan`` yet, or None when it can."""
    missing = [axis for axis in plan.degrees.active() if axis not in RUNNABLE_AXES]
    if missing:
        return f"pfrun does not run {', '.join(missing)} parallelism yet (runs serial, pipefusion, cfg, data)"
    return None


def unrunnable_reason_function() -> Callable[[ParallelPlan, ModelPreset], str | None]:
    """The runtime's own answer when it is installed (torch-free module), else the local one."""
    try:
        from runtime.capabilities import unrunnable_reason  # type: ignore[import-not-found]
    except ImportError:
        return local_unrunnable_reason
    return unrunnable_reason


def unrunnable_reason(plan: ParallelPlan, model: ModelPreset) -> str | None:
    return unrunnable_reason_function()(plan, model)
