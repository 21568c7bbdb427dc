"""Benchmark: PipeFusion on 2 CPU ranks against the serial run on 1 rank, one thread each.

A tiny DiT is scaled up (``config_overrides`` on dit-tiny) until one serial step takes
at least 0.2 s on one thread, so the measured latency is dominated by the transformer
rather than by per-call overheads. Both runs use the same weights, prompt and seed, in
the same process launch scheme; the latency is the denoising loop (VAE decode off),
measured by the ranks after a start barrier. The speed-up is the ratio of the two,
measured in one invocation; the result and the command go to docs/benchmarks-runtime.md.

    python -m benchmarks.pipefusion_speedup [--steps 20] [--patches 2] [--warmup 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from profiles.loading import write_atomic
from profiles.catalog.models import ModelPreset, load_model
from runtime.run import execute, job_for
from simulator.plan import ParallelPlan

OVERRIDES = {"num_layers": 8, "num_attention_heads": 4, "attention_head_dim": 64, "sample_size": 64}
"""dit-tiny scaled to hidden 256 and 8 blocks; at 512 px the latent is 64×64 → 1024 tokens."""
RESOLUTION_PX = 512
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks-runtime.md"


def bench_preset() -> ModelPreset:
    base = load_model("dit-tiny")
    data = base.model_dump()
    data.update(name="dit-bench", description="dit-tiny scaled up for the PipeFusion speed-up benchmark",
                config={**base.config, **OVERRIDES}, default_resolution=RESOLUTION_PX)
    return ModelPreset(**data)


def _matmul_work(seconds_out: "Any", n: int = 30) -> None:
    import time

    import torch

    torch.set_num_threads(1)
    a = torch.randn(768, 768)
    start = time.perf_counter()
    for _ in range(n):
        a @ a
    seconds_out.put(time.perf_counter() - start)


def parallel_capacity() -> float:
    """How many cores two 1-thread processes really get right now: 2 × t(alone) / t(side by side).

    2.0 on two idle cores; less when the cores are shared (hyper-threads, other jobs). It
    bounds the speed-up any 2-rank CPU run can show at that moment.
    """
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    alone = ctx.Process(target=_matmul_work, args=(q,))
    alone.start()
    alone.join()
    t_alone = q.get()
    pair = [ctx.Process(target=_matmul_work, args=(q,)) for _ in range(2)]
    for proc in pair:
        proc.start()
    for proc in pair:
        proc.join()
    t_pair = max(q.get(), q.get())
    return 2 * t_alone / t_pair


def measure(preset: ModelPreset, plans: list[ParallelPlan], repeats: int) -> list[tuple[float, list[float], list[float]]]:
    """Per plan: best-of-``repeats`` latency (s), that run's per-step times and CPU seconds per rank.

    The plans alternate (serial, parallel, serial, ...) so that a burst of load from other
    jobs on the machine hits both alike.
    """
    best: list[Any] = [None] * len(plans)
    for _ in range(repeats):
        for i, plan in enumerate(plans):
            result = execute(job_for(plan, preset, decode=False, threads=1, timeout_s=300))
            if best[i] is None or result.latency_s < best[i].latency_s:
                best[i] = result
    return [(b.latency_s, b.step_times_s, b.cpu_s_per_rank) for b in best]


def previous_rows() -> list[str]:
    """The run rows already in the document (kept, so a new run never hides an old one)."""
    if not DOC.exists():
        return []
    lines = DOC.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| when (UTC)")), None)
    if start is None:
        return []
    return [line for line in lines[start + 2:] if line.startswith("| ")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--patches", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="Print only; do not update docs/.")
    args = ap.parse_args(argv)
    preset = bench_preset()
    common = dict(model=preset.name, height_px=RESOLUTION_PX, width_px=RESOLUTION_PX, steps=args.steps)
    serial_plan = ParallelPlan(**common)
    pf_plan = ParallelPlan(**common, degrees={"pipefusion": 2}, patches=args.patches, warmup_steps=args.warmup)
    capacity_before = parallel_capacity()
    (serial_s, serial_steps, serial_cpu), (pf_s, pf_steps, pf_cpu) = measure(preset, [serial_plan, pf_plan],
                                                                             args.repeats)
    capacity_after = parallel_capacity()
    capacity = min(capacity_before, capacity_after)
    step_s = sorted(serial_steps)[len(serial_steps) // 2]
    speedup = serial_s / pf_s
    command = "python -m benchmarks.pipefusion_speedup " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        f"model dit-bench (dit-tiny + {OVERRIDES}), {RESOLUTION_PX} px, T={args.steps}, CFG batch 2",
        f"serial, 1 rank x 1 thread:          {serial_s:.3f} s (median step {step_s:.3f} s)",
        f"pipefusion=2, M={args.patches}, W={args.warmup}, 2 ranks x 1 thread: {pf_s:.3f} s",
        f"speed-up: {speedup:.2f}x (ceiling 2x)",
        f"CPU parallel capacity (2 x t_alone / t_side_by_side of 1-thread matmuls), a snapshot just before "
        f"and after the runs: {capacity_before:.2f}, {capacity_after:.2f}",
        f"CPU seconds per rank: serial {', '.join(f'{c:.2f}' for c in serial_cpu)}; "
        f"pipefusion {', '.join(f'{c:.2f}' for c in pf_cpu)} (work added by PipeFusion: "
        f"{sum(pf_cpu) / sum(serial_cpu) - 1:+.1%})",
    ]
    print("\n".join(lines))
    if step_s < 0.2:
        print(f"warning: a serial step took {step_s:.3f} s < 0.2 s; the benchmark is overhead-bound", file=sys.stderr)
    if not args.no_write:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        doc = ["# Runtime benchmark: PipeFusion speed-up on CPU", "",
               "Measured by `benchmarks/pipefusion_speedup.py` (a benchmark, not a test). Both runs in one",
               "invocation, same weights, prompt and seed; latency is the denoising loop after a start",
               "barrier (process start, model build and VAE decode excluded), best of "
               f"{args.repeats} runs each, serial and parallel runs alternating.", "",
               f"- command: `{command.strip()}`",
               f"- when: {stamp}; machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
               f"torch threads per rank 1, gloo over loopback",
               "", "```", *lines, "```", "",
               "Per-step times of the PipeFusion run (s): " + ", ".join(f"{t:.3f}" for t in pf_steps), "",
               "The first step is the synchronous warm-up (both stages in turn), so the ideal speed-up is",
               f"T / (W + (T - W)/2) = {args.steps / (args.warmup + (args.steps - args.warmup) / 2):.2f}x "
               "before pipeline fill, transfers and per-patch overheads.", "",
               "How to read it: the machine's 2 cores are shared with other jobs, so the benchmark also",
               "measures how much parallelism two 1-thread processes actually got around the runs",
               "(`capacity`: 2.0 on two idle cores, 1.0 when the pair shares one core's worth), as snapshots",
               "before and after; load changes within seconds, so serial and parallel runs alternate and the",
               "best of each is kept. The CPU seconds show the work PipeFusion adds (smaller matmuls,",
               "transfers, per-patch embedding and scheduler calls) independently of the machine's load.", ""]
        row = (f"| {stamp} | `{command.strip()}` | {serial_s:.3f} | {pf_s:.3f} | {speedup:.2f}x | {capacity:.2f} |")
        doc += ["## Every recorded run", "",
                "Each invocation appends a row (the machine's load varies; nothing is dropped).", "",
                "| when (UTC) | command | serial s | pipefusion s | speed-up | capacity |", "|---|---|---|---|---|---|",
                *previous_rows(), row, ""]
        write_atomic(DOC, "\n".join(doc))
        print(f"written: {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
