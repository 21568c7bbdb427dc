"""Sizes no real job has, refused in one line before any work starts.

A plan that asks for them would otherwise run for hours (a direct simulation of 10^9 steps)
or die in a traceback (a topology of 10^11 GPUs): the limits sit far above real jobs and
far below what breaks the tools. The topology's device count is checked where the graph is
built (:data:`profiles.topology.graph.MAX_DEVICES`).
"""

from __future__ import annotations

MAX_STEPS = 1_000_000
"""Samplers take at most about 1,000 steps; long-run studies up to 10^6 are simulated by
extrapolating the repeating per-step pattern (:func:`simulator.engine.simulate`)."""
MAX_SIDE_PX = 16_384
"""Larger than any preset's published resolution (Flux and PixArt-Σ go to 4,096 px)."""
MAX_DIRECT_PASSES = 2_000_000
"""Stage passes one event simulation may run (steps × patches × stage groups); about a
minute on a 2-core machine. Longer runs must repeat a per-step pattern to be extrapolated."""


def size_violations(height_px: int, width_px: int, steps: int) -> list[str]:
    """``field: what is wrong`` for each size beyond the limits."""
    out = []
    if steps > MAX_STEPS:
        out.append(f"steps: {steps:,} steps is more than the {MAX_STEPS:,} pfplan simulates")
    for name, value in (("height_px", height_px), ("width_px", width_px)):
        if value > MAX_SIDE_PX:
            out.append(f"{name}: {value:,} px is beyond the {MAX_SIDE_PX:,} px any model supports")
    return out
