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

Since 2026-12-06 the launches are made from a new interpreter that has run nothing else
(:data:`_CHILD`): a rank is forked from its launcher, and forked from the profiler's process it
inherited what the profiler's own VAE and layer timings had warmed (oneDNN's kernels among
them). Launched from the profiler, five launches read a decode of 31-36 ms and a latency of
52-60 ms (two profiles); from a clean interpreter, 40-51 and 66-79 ms (eight sets); pfrun's own
serial runs read 47-49 ms of VAE spans and 64-66 ms (this VM, 21:23-21:41 UTC, 2026-12-06).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from profiles.catalog.models import ModelPreset
from profiles.costs.profile_format import RuntimeLaunch


def time_runtime_launches(preset: ModelPreset, *, resolution_px: int, steps: int, launches: int,
                          device: str, timeout_s: float = 600.0) -> RuntimeLaunch:
    """Medians over ``launches`` fresh serial runs (after one untimed launch that warms the file cache),
    launched from a clean interpreter (:data:`_CHILD`)."""
    from simulator.plan import ParallelPlan

    plan = ParallelPlan(model=preset.name, height_px=resolution_px, width_px=resolution_px, steps=steps,
                        degrees={}, patches=1, warmup_steps=steps)
    args = json.dumps({"plan": plan.model_dump_json(), "preset": preset.model_dump_json(), "device": device,
                       "launches": launches})
    try:
        child = subprocess.run([sys.executable, "-c", _CHILD, args], cwd=Path(__file__).resolve().parents[1],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False,
                               timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the runtime launches of {preset.name} did not end within {timeout_s:g} s") from None
    tail = (child.stderr.strip().splitlines() or ["no output"])[-1]
    if child.returncode != 0:
        raise RuntimeError(f"the runtime launches of {preset.name} failed: {tail}")
    try:
        runs = json.loads((child.stdout.strip().splitlines() or [""])[-1])
    except json.JSONDecodeError:
        raise RuntimeError(f"the runtime launches of {preset.name} printed no result (last error line: {tail})") from None
    firsts, later, decodes, latencies, setups = [], [], [], [], []
    for run in runs:
        events = sorted(run["events"], key=lambda e: e["ts"])
        forwards = [e["dur"] / 1e6 for e in events if e.get("cat") == "compute"]
        if len(forwards) < 2:
            raise RuntimeError(f"a serial run of {preset.name} recorded {len(forwards)} forward spans, expected {steps}")
        rest = statistics.median(forwards[1:])
        firsts.append(forwards[0] - rest)
        later.append(rest)
        decodes += [e["dur"] / 1e6 for e in events if e.get("cat") == "vae"]
        latencies.append(run["latency_s"])
        setups.append(events[0]["ts"] / 1e6)  # spans start from the barrier (runtime.measure: restart)
    return RuntimeLaunch(height_px=resolution_px, width_px=resolution_px, steps=steps,
                         batch=2 if preset.uses_cfg else 1, step_s=statistics.median(later),
                         first_step_extra_s=max(statistics.median(firsts), 0.0),
                         vae_decode_s=statistics.median(decodes) if decodes else None,
                         latency_s=statistics.median(latencies), setup_s=statistics.median(setups),
                         launches=launches,
                         fresh_process=True)


_CHILD = """
import json, sys
from profiles.catalog.models import ModelPreset
from runtime.run import execute, job_for
from simulator.plan import ParallelPlan
args = json.loads(sys.argv[1])
job = job_for(ParallelPlan.model_validate_json(args["plan"]), ModelPreset.model_validate_json(args["preset"]),
              device=args["device"])
execute(job, fresh_process=True)  # untimed: warms the file cache
runs = []
for _ in range(args["launches"]):
    result = execute(job, fresh_process=True)
    runs.append({"events": result.events[0], "latency_s": result.latency_s})
print(json.dumps(runs))
"""
"""The launcher: a new interpreter that builds nothing itself, so each rank it forks starts as cold as
``pfrun``'s (rank 0's spans and latency of every timed launch, as one JSON line)."""
