"""How search time grows with the GPU count (issue 14); writes its section of docs/benchmarks.md.

Searches flux-dev at 4096 px (28 steps) and pixart-alpha at 2048 px (20 steps) on copies of
l40-2node with 1, 2, 4, … nodes (8, 16, … 1,024 L40s), in this one process, each search
with fresh price caches, and times one ``simulate`` of pixart-alpha 1024 px,
``pipefusion=8, patches=8`` on pcie8 (simulation time beside the whole process's time,
imports included, measured in a fresh process). The run is bounded: a size is skipped (and
listed as such) when the last size's search time, grown by the last doubling's ratio, would
overrun what is left of ``--budget-s`` for that model. Each row splits the search's CPU
time at its first "simulating" progress report: pricing every shape (enumeration, bounds,
placement, memory, estimates) against the event simulation of the best ones.

    python benchmarks/search_scaling.py [--max-gpus 1024] [--budget-s 900] [--stdout]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._doc_sections import publish  # noqa: E402

COMMAND = "python benchmarks/search_scaling.py"
CASES = (("flux-dev", 4096, 28), ("pixart-alpha", 2048, 20))
BEGIN, END = "<!-- search_scaling:begin -->", "<!-- search_scaling:end -->"
TARGETS = {64: 10.0, 512: 60.0}
SIMULATE_TARGET_MS = 20.0
SIMULATE_CHILD = """
import time
t0 = time.perf_counter()
from profiles.catalog.models import load_model
from profiles.costs.selection import cost_model_for
from profiles.topology.graph import load_cluster
from simulator.engine import simulate
from simulator.plan import ParallelPlan
model, cluster = load_model("pixart-alpha"), load_cluster("pcie8")
cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=20,
                    degrees={"pipefusion": 8}, patches=8, warmup_steps=1)
times = []
for _ in range(5):
    start = time.perf_counter()
    result = simulate(plan, model, cluster, cost)
    times.append(time.perf_counter() - start)
print(times[0], sorted(times)[2], result.latency_s, time.perf_counter() - t0)
"""


def copies(nodes: int):
    """l40-2node with ``nodes`` identical servers."""
    from profiles.topology.graph import ClusterGraph, load_cluster

    topology = load_cluster("l40-2node").topology
    node = topology.nodes[0].model_copy(update={"count": nodes})
    return ClusterGraph(topology.model_copy(update={"name": f"l40-{nodes}node", "nodes": [node]}))


def time_search(model_name: str, px: int, steps: int, gpus: int,
                jobs: int = 1) -> tuple[float, float, float, float, dict, str]:
    """(graph build s, search wall s, search CPU s, of which pricing before simulation, counts, winner).

    The CPU time is this process's and its search workers' (``jobs`` > 1; reaped before the search returns)."""
    import resource

    from planner.search import SearchSettings, search
    from profiles.catalog.models import load_model
    from profiles.costs.selection import cost_model_for

    start = time.perf_counter()
    cluster = copies(gpus // 8)
    built = time.perf_counter() - start
    model = load_model(model_name)
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    def children_s() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime
    start, cpu, workers = time.perf_counter(), time.process_time(), children_s()
    simulating_from: list[float] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "simulating" and not simulating_from:
            simulating_from.append(time.process_time())
    result = search(model, cluster, cost, height_px=px, width_px=px, steps=steps, progress=progress,
                    settings=SearchSettings(jobs=jobs))
    took, end = time.perf_counter() - start, time.process_time()
    pricing = (simulating_from[0] if simulating_from else end) - cpu
    best = result.best
    return built, took, end - cpu + children_s() - workers, pricing, result.counts, \
        f"{best.plan.degrees.label()} M={best.plan.patches} {best.latency_s:.3g} s"


def time_simulate() -> tuple[float, float, float, float, float]:
    """(first simulate s, median of 5 s, latency s, in-process total s, process wall s) in a fresh process."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", SIMULATE_CHILD], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.split()
    wall = time.perf_counter() - start
    first, median, latency, inside = map(float, out)
    return first, median, latency, inside, wall


def load() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.1f} (1 min), {five:.1f} (5 min)"
    except OSError:
        return "load average unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-gpus", type=int, default=1024)
    parser.add_argument("--budget-s", type=float, default=900.0,
                        help="search seconds per model; a size projected to overrun what is left is skipped")
    parser.add_argument("--jobs", type=int, default=None,
                        help="processes that simulate a search's best shapes (default: the cores this process may use)")
    parser.add_argument("--stdout", action="store_true")
    args = parser.parse_args()
    from planner.simulate_chosen import default_jobs
    jobs = args.jobs or default_jobs()
    sizes = [n for n in (8, 16, 32, 64, 128, 256, 512, 1024) if n <= args.max_gpus]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [BEGIN, "## Search time against GPU count", "",
             f"`{COMMAND}` on {platform.machine()} with {os.cpu_count()} CPU cores, Python "
             f"{platform.python_version()}, {started}; {load()} at the start (other sessions share the cores, "
             "so times are wall-clock under that load). Copies of l40-2node (8 L40s per node, InfiniBand "
             "between nodes), analytic L40 cost model, default settings (10 shapes simulated, the "
             f"best 4 under every placement, one per placement class), the chosen shapes simulated on {jobs} "
             f"process{'es' if jobs > 1 else ''} (`--jobs`, the cores this process may use; any number gives the "
             f"same answer, tests/planner/test_simulate_chosen.py), a budget of {args.budget_s:g} s of search per model. "
             f"Targets: 64 GPUs ≤ {TARGETS[64]:g} s, 512 GPUs ≤ {TARGETS[512]:g} s, "
             "growth no worse than linear from 64 GPUs.", "",
             "The CPU column is the CPU time of this process and its search workers (`time.process_time`, "
             "`getrusage(RUSAGE_CHILDREN)`): on a shared box it is the better guide to what the search costs; the "
             "targets are judged on wall time. The load column is "
             "the 1-minute load average after each search.", "",
             "| model px steps | GPUs | graph build s | search wall s | search CPU s | of which pricing | "
             "of which simulating | load | shapes | pruned by bound | estimated | winner |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    growth: dict[str, dict[int, float]] = {}
    winners: dict[tuple[str, int], str] = {}
    for model_name, px, steps in CASES:
        spent = 0.0
        label = f"{model_name} {px} {steps}"
        for gpus in sizes:
            times = growth.get(label, {})
            if times:
                done = sorted(times)
                ratio = times[done[-1]] / times[done[-2]] if len(done) > 1 and times[done[-2]] > 0 else 2.0
                projected = times[done[-1]] * max(ratio, 1.0)
                if spent + projected > args.budget_s:
                    lines.append(f"| {label} | {gpus} | - | skipped (projected {projected:.0f} s; {spent:.0f} s of the "
                                 f"{args.budget_s:g} s budget spent) | | | | | | | | |")
                    print(lines[-1], flush=True)
                    continue
            built, took, cpu, pricing, counts, winner = time_search(model_name, px, steps, gpus, jobs)
            spent += took
            growth.setdefault(label, {})[gpus] = took
            winners[label, gpus] = winner
            estimated = counts["shapes"] - counts.get("pruned_by_bound", 0)
            lines.append(f"| {label} | {gpus} | {built:.3f} | {took:.1f} | {cpu:.1f} | {pricing:.1f} | "
                         f"{cpu - pricing:.1f} | {os.getloadavg()[0]:.1f} | {counts['shapes']:,} | "
                         f"{counts.get('pruned_by_bound', 0):,} | {estimated:,} | {winner} |")
            print(lines[-1], flush=True)
    lines += ["", "Targets:", ""]
    for label, times in growth.items():
        for gpus, limit in TARGETS.items():
            if gpus in times:
                lines.append(f"- {label}, {gpus} GPUs: {times[gpus]:.1f} s against ≤ {limit:g} s: "
                             f"{'met' if times[gpus] <= limit else 'missed'}")
        steps_up = [(a, b) for a, b in zip(sorted(times), sorted(times)[1:]) if a >= 64]
        if steps_up:
            worst = max(times[b] / times[a] / (b / a) for a, b in steps_up)
            lines.append(f"- {label}: worst growth from 64 GPUs up is {worst:.2f} × linear per doubling "
                         f"({'no worse than linear' if worst <= 1.0 else 'worse than linear'})")
    if jobs > 1 and 64 in sizes:
        lines += ["", f"The same 64-GPU searches on one process, right after (wall s; the winner must be the same):", ""]
        for model_name, px, steps in CASES:
            label = f"{model_name} {px} {steps}"
            if 64 not in growth.get(label, {}):
                continue
            _, took, cpu, _, _, winner = time_search(model_name, px, steps, 64, 1)
            lines.append(f"- {label}: {took:.1f} s on 1 process (CPU {cpu:.1f} s), {growth[label][64]:.1f} s on "
                         f"{jobs}: ×{took / growth[label][64]:.2f}; winner {winner} "
                         f"({'the same' if winner == winners[label, 64] else 'DIFFERENT: ' + winners[label, 64]})")
            print(lines[-1], flush=True)
    first, median, latency, inside, wall = time_simulate()
    lines += ["", "One `simulate` of pixart-alpha 1024 px, 20 steps, `pipefusion=8, patches=8, warmup=1` on pcie8, "
              "in a fresh process:", "",
              "| first simulation ms | median of 5 ms | target ms | process wall s (imports included) | "
              "simulated latency s |", "|---|---|---|---|---|",
              f"| {first * 1e3:.1f} | {median * 1e3:.1f} | {SIMULATE_TARGET_MS:g} "
              f"({'met' if median * 1e3 <= SIMULATE_TARGET_MS else 'missed'}) | {wall:.2f} | {latency:.4g} |",
              "", f"{load()} at the end.", "", END]
    return publish("\n".join(lines), page=ROOT / "docs" / "benchmarks.md", begin=BEGIN, end=END,
                   stdout_only=args.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
