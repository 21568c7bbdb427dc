"""What ``pfrun`` can execute today, as pure data and one pure function (no torch).

It sits beside the plan format because it is part of the same contract ("a plan the
planner can emit is a plan the runtime can execute"): the planner marks the plans it emits
as runnable or not with :func:`unrunnable_reason`, and the runtime calls the same function
before it starts any process, so a plan is refused with the same one-line reason
everywhere, and neither package imports the other. The runtime's tests check that the
executors really run every case this says they run.
"""

from __future__ import annotations

from profiles.models import ModelPreset
from simulator.plan import ParallelPlan

RUNNABLE_AXES: tuple[str, ...] = ("data", "cfg", "pipefusion", "ulysses")
"""Parallel axes the runtime executes; the others (distrifusion, ring, tensor) are refused."""

PIPEFUSION_FAMILIES: tuple[str, ...] = ("pixart", "sd3", "flux", "dit", "hunyuan")
"""Families whose blocks the PipeFusion executor can split into stages."""
ULYSSES_FAMILIES: tuple[str, ...] = ("pixart", "dit", "hunyuan")
"""Families whose self-attention the Ulysses executor exchanges (runtime/ulysses.py); joint
attention (SD3, Flux) would also need the text stream's heads gathered back."""


def unrunnable_reason(plan: ParallelPlan, model: ModelPreset) -> str | None:
    """Why ``pfrun`` cannot execute ``plan`` (one line), or None when it can.

    ``plan`` is assumed to pass :func:`simulator.plan.validate`; this adds only the
    limits of the runtime itself.
    """
    missing = [axis for axis, n in plan.degrees.active().items() if axis not in RUNNABLE_AXES]
    if missing:
        return (f"degrees: {', '.join(f'{a}({plan.degrees.as_dict()[a]})' for a in missing)} not executed by "
                f"pfrun yet; it runs {', '.join(RUNNABLE_AXES)}")
    ulysses = plan.degrees.ulysses
    if ulysses > 1:
        if model.family not in ULYSSES_FAMILIES:
            return (f"degrees.ulysses: Ulysses on {model.family} ({model.name}) is not executed; "
                    f"families: {', '.join(ULYSSES_FAMILIES)}")
        if plan.degrees.pipefusion > 1 or plan.patches > 1:
            return "degrees.ulysses: Ulysses inside PipeFusion stages is not executed yet (only with cfg and data)"
        rows = model.token_grid(plan.height_px, plan.width_px)[0]
        if rows % ulysses:
            return (f"degrees.ulysses: the {rows} token rows do not split into {ulysses} equal bands "
                    "(pfrun's Ulysses needs equal bands)")
    pipelined = plan.degrees.pipefusion > 1 or plan.patches > 1
    if pipelined and model.family not in PIPEFUSION_FAMILIES:
        return (f"degrees.pipefusion: PipeFusion on {model.family} ({model.name}) is not executed; "
                f"families: {', '.join(PIPEFUSION_FAMILIES)}")
    if pipelined and plan.warmup_steps < 1:
        return ("warmup_steps: PipeFusion needs at least one synchronous warm-up step to fill its K/V "
                "buffers before patches attend to them")
    return None
