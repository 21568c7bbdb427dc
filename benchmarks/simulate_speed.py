"""How long one simulation takes (targets: ≤ 20 ms for PixArt-α 1024 px pipefusion=8 M=8 on pcie8, issue 14;
≤ 0.5 s for the others, on the 2-core dev machine); writes docs/benchmarks.md.

Run from the repository root::

    python benchmarks/simulate_speed.py            # updates the simulator section of docs/benchmarks.md
    python benchmarks/simulate_speed.py --stdout   # prints it instead

Each case is simulated ``--repeat`` times in this process; the table shows the first run
(cold: routes not yet cached in the cluster graph, cost-model calls not yet cached) and the
median of the rest, as this process's CPU time (``time.process_time``: what the simulation
itself costs, the better guide on a shared box) beside wall time; the target is judged on the
median CPU time. ``simulate`` stops each run once its state at a step start repeats
(:mod:`simulator.periodic`): the "steps simulated" column counts the steps every simulation of
one call began (the stopped run, the check beyond it, an extrapolation's short runs), and the
whole simulation (``extrapolate=False``) is timed beside it, up to ``WHOLE_MAX_STEPS`` steps.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiles.costs.selection import cost_model_for  # noqa: E402
from benchmarks._doc_sections import publish  # noqa: E402
from profiles.catalog.models import load_model  # noqa: E402
from profiles.topology.graph import load_cluster  # noqa: E402
from simulator.engine import Simulation, simulate  # noqa: E402
from simulator.plan import ParallelPlan, parse_parallel_spec, validate  # noqa: E402

COMMAND = "python benchmarks/simulate_speed.py"
CASES = (
    ("pixart-alpha", 1024, 20, "pcie8", "pipefusion=8,patches=8,warmup=1", 0.020),
    ("pixart-alpha", 1024, 20, "pcie8", "pipefusion=8,patches=16,warmup=1", 0.5),
    ("flux-dev", 4096, 28, "l40-2node", "pipefusion=8,ulysses=2,patches=16,warmup=1", 0.5),
    ("flux-dev", 4096, 28, "l40-8node", "pipefusion=8,ulysses=8,patches=8,warmup=1", 0.5),
    ("flux-dev", 4096, 28, "l40-8node", "pipefusion=16,ulysses=4,patches=16,warmup=1", 0.5),
    ("pixart-alpha", 1024, 10 ** 6, "pcie8", "pipefusion=8,patches=8,warmup=1", 1.0),
)
"""(model, px, steps, topology, plan, target CPU s); ``l40-8node``: eight copies of l40-2node's server
(:func:`benchmarks.search_scaling.copies`), the size the search's deep winners run on. The million-step
case is issue 14's long run (≤ 1 s); tests/simulator/test_long_runs.py checks it equals the extrapolation
of whole 60- and 61-step runs and bounds its simulated steps."""
WHOLE_MAX_STEPS = 1000
"""Longer cases are not also simulated whole (a million steps whole would run for hours)."""
BEGIN, END = "<!-- simulate_speed:begin -->", "<!-- simulate_speed:end -->"


def cluster_named(topo: str):
    if topo.startswith("l40-") and topo.endswith("node") and topo != "l40-2node":
        from benchmarks.search_scaling import copies

        return copies(int(topo[4:-4]))
    return load_cluster(topo)


def measure(model_name: str, res: int, steps: int, topo: str, spec: str, repeat: int) -> dict:
    """CPU and wall seconds (first, median of the rest) of ``simulate``, and of the whole simulation."""
    model = load_model(model_name)
    cluster = cluster_named(topo)
    plan = ParallelPlan(model=model_name, height_px=res, width_px=res, steps=steps, **parse_parallel_spec(spec))
    validate(plan, model, cluster)
    out: dict = {"whole": None}
    for whole in (False, True) if steps <= WHOLE_MAX_STEPS else (False,):
        cpu, wall = [], []
        for _ in range(repeat if not whole else max(2, repeat // 2)):
            cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
            start, start_cpu = time.perf_counter(), time.process_time()
            result = simulate(plan, model, cluster, cost, extrapolate=False if whole else None)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        out["whole" if whole else "short"] = (cpu[0], statistics.median(cpu[1:] or cpu),
                                              statistics.median(wall[1:] or wall), result)
    out["steps_simulated"] = steps_simulated(plan, model, cluster)
    return out


def steps_simulated(plan: ParallelPlan, model, cluster) -> int:
    """Steps begun by every simulation one ``simulate`` call runs (a steady-state stop, the check beyond it,
    or the short runs of an extrapolation)."""
    begun = [0]
    original = Simulation.step_began

    def counted(self, step: int, index: int) -> None:
        begun[0] += 1
        original(self, step, index)

    Simulation.step_began = counted
    try:
        simulate(plan, model, cluster, cost_model_for(model, cluster.gpu_of(cluster.devices[0])))
    finally:
        Simulation.step_began = original
    return begun[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stdout", action="store_true")
    args = parser.parse_args()
    lines = [BEGIN, "## Simulator speed", "",
             f"`{COMMAND}` on {platform.machine()} with {os.cpu_count()} CPU cores, Python "
             f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; other work may share "
             f"the cores (1-minute load average {os.getloadavg()[0]:.1f} at the start). Times in ms: CPU time of "
             "this process (`time.process_time`) for the first run and the median of the next, the median wall "
             "time beside; the target is on the median CPU time. \"whole\": the same plan with every step "
             "simulated (`extrapolate=False`); both give the same latency (to 1e-9, tests/simulator/"
             "test_steady_state.py). \"steps simulated\": the steps begun by every simulation the call ran "
             "(a steady-state stop and the check beyond it, or an extrapolation's short runs).", "",
             "| case | plan | steps simulated | cold CPU ms | median CPU ms | median wall ms | whole: median CPU ms | "
             "simulated latency s | transfers | target |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model_name, res, steps, topo, spec, target in CASES:
        got = measure(model_name, res, steps, topo, spec, args.repeat)
        cold, warm, wall, result = got["short"]
        whole = f"{got['whole'][1] * 1e3:.1f}" if got["whole"] else "-"
        lines.append(f"| {model_name} {res} px, {steps:,} steps, {topo} | `{spec}` | {got['steps_simulated']:,} of "
                     f"{steps:,} | {cold * 1e3:.1f} | {warm * 1e3:.1f} | {wall * 1e3:.1f} | {whole} | "
                     f"{result.latency_s:.4g} | {result.traffic.transfers} | ≤ {target * 1e3:g} ms "
                     f"{'met' if warm <= target else 'missed'} |")
    lines += ["", f"1-minute load average {os.getloadavg()[0]:.1f} at the end.", "", END]
    return publish("\n".join(lines), page=ROOT / "docs" / "benchmarks.md", begin=BEGIN, end=END,
                   stdout_only=args.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
