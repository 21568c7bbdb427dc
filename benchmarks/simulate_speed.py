"""How long one simulation takes (target: ≤ 0.5 s each on the 2-core dev machine); writes docs/benchmarks.md.

Run from the repository root::

    python benchmarks/simulate_speed.py            # updates the simulator section of docs/benchmarks.md
    python benchmarks/simulate_speed.py --stdout   # prints it instead

Each case is simulated ``--repeat`` times in this process; the table shows the first run
(cold: routes not yet cached in the cluster graph, cost-model calls not yet cached) and the
median of the rest. Every simulated step is simulated (no steady-state reuse).
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
from simulator.engine import simulate  # noqa: E402
from simulator.plan import ParallelPlan, parse_parallel_spec, validate  # noqa: E402

COMMAND = "python benchmarks/simulate_speed.py"
CASES = (
    ("flux-dev", 4096, 28, "l40-2node", "pipefusion=8,ulysses=2,patches=16,warmup=1"),
    ("pixart-alpha", 1024, 20, "pcie8", "pipefusion=8,patches=16,warmup=1"),
)
BEGIN, END = "<!-- simulate_speed:begin -->", "<!-- simulate_speed:end -->"
TARGET_S = 0.5


def measure(model_name: str, res: int, steps: int, topo: str, spec: str, repeat: int) -> tuple[float, float, float, int]:
    model = load_model(model_name)
    cluster = load_cluster(topo)
    plan = ParallelPlan(model=model_name, height_px=res, width_px=res, steps=steps, **parse_parallel_spec(spec))
    validate(plan, model, cluster)
    times, latency, transfers = [], 0.0, 0
    for _ in range(repeat):
        cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
        start = time.perf_counter()
        result = simulate(plan, model, cluster, cost)
        times.append(time.perf_counter() - start)
        latency, transfers = result.latency_s, result.traffic.transfers
    return times[0], statistics.median(times[1:] or times), latency, transfers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stdout", action="store_true")
    args = parser.parse_args()
    lines = [BEGIN, "## Simulator speed", "",
             f"`{COMMAND}` on {platform.machine()} with {os.cpu_count()} CPU cores, Python "
             f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; other work may share "
             f"the cores (1-minute load average {os.getloadavg()[0]:.1f} at the start). Target ≤ {TARGET_S} s "
             "per simulation, wall time.", "",
             "| case | plan | cold run s | median of next runs s | simulated latency s | transfers | target |",
             "|---|---|---|---|---|---|---|"]
    for model_name, res, steps, topo, spec in CASES:
        cold, warm, latency, transfers = measure(model_name, res, steps, topo, spec, args.repeat)
        lines.append(f"| {model_name} {res} px, {steps} steps, {topo} | `{spec}` | {cold:.3f} | {warm:.3f} | "
                     f"{latency:.2f} | {transfers} | {'met' if warm <= TARGET_S else 'missed'} |")
    lines += ["", f"1-minute load average {os.getloadavg()[0]:.1f} at the end.", "", END]
    return publish("\n".join(lines), page=ROOT / "docs" / "benchmarks.md", begin=BEGIN, end=END,
                   stdout_only=args.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
