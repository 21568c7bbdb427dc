"""The costs a run pays once, measured with the runtime itself (``pfplan profile compute --extras``).

A fresh pfrun rank builds its model and pipeline, then runs the loop and decodes: what its
first forward and its one VAE decode cost beyond a warm call depends on what its process did
before (building the pipeline, the conditioning, the scheduler), which the profiler's own
process cannot copy. Timed there, the first forward came out 6-11 ms colder and the first
decode 20-30 % slower than in pfrun's own spans, where the first step's forward took no longer
than the next ones (pixart-tiny, 2026-12-02). So these two figures come from fresh one-rank
serial launches of the runtime (:func:`runtime.run.execute` with ``fresh_process``: each launch
a new rank process, as a ``pfrun`` command's own), read from the spans the runtime records.
Until 2026-12-02 a one-rank launch ran in the profiler's own process (the runtime's default
for one rank), after the profiler's timings had warmed it: its decode then read 64 ms where a
fresh rank's took 92-141 ms, and the first forward looked no colder than the next.
"""

from __future__ import annotations

import statistics

from profiles.catalog.models import ModelPreset
from profiles.costs.profile_format import RuntimeLaunch


def time_runtime_launches(preset: ModelPreset, *, resolution_px: int, steps: int, launches: int,
                          device: str) -> RuntimeLaunch:
    """Medians over ``launches`` fresh serial runs (after one untimed launch that warms the file cache)."""
    from runtime.run import execute, job_for
    from simulator.plan import ParallelPlan

    plan = ParallelPlan(model=preset.name, height_px=resolution_px, width_px=resolution_px, steps=steps,
                        degrees={}, patches=1, warmup_steps=steps)
    job = job_for(plan, preset, device=device)
    execute(job, fresh_process=True)
    firsts, later, decodes, latencies, setups = [], [], [], [], []
    for _ in range(launches):
        result = execute(job, fresh_process=True)
        events = sorted(result.events[0], key=lambda e: e["ts"])
        forwards = [e["dur"] / 1e6 for e in events if e.get("cat") == "compute"]
        if len(forwards) < 2:
            raise RuntimeError(f"a serial run of {preset.name} recorded {len(forwards)} forward spans, expected {steps}")
        rest = statistics.median(forwards[1:])
        firsts.append(forwards[0] - rest)
        later.append(rest)
        decodes += [e["dur"] / 1e6 for e in events if e.get("cat") == "vae"]
        latencies.append(result.latency_s)
        setups.append(events[0]["ts"] / 1e6)  # spans start from the barrier (runtime.measure: restart)
    return RuntimeLaunch(height_px=resolution_px, width_px=resolution_px, steps=steps,
                         batch=2 if preset.uses_cfg else 1, step_s=statistics.median(later),
                         first_step_extra_s=max(statistics.median(firsts), 0.0),
                         vae_decode_s=statistics.median(decodes) if decodes else None,
                         latency_s=statistics.median(latencies), setup_s=statistics.median(setups),
                         launches=launches,
                         fresh_process=True)
