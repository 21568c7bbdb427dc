"""What the work-left bound (simulator/work_left.py) saves a search; writes its section of docs/benchmarks.md.

Each case is searched four times in this one process, the bound on, off, on, off (so that neither
arm always runs on cold price caches or in a quiet minute), on one process (``jobs=1``: the
simulations a search runs, without the scheduling of a pool). Reported per arm: CPU seconds
(``time.process_time``), the runs stopped early, and whether the five best plans (shape, patches,
placement, latency) are the same in every arm, as the bound must leave them.

    python benchmarks/work_left_gain.py [--stdout]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._doc_sections import publish  # noqa: E402
from benchmarks.search_scaling import copies, load  # noqa: E402

COMMAND = "python benchmarks/work_left_gain.py"
CASES = (("flux-dev", 4096, 28, 64), ("pixart-alpha", 2048, 20, 128))
ARMS = ("on", "off", "on", "off")
BEGIN, END = "<!-- work_left_gain:begin -->", "<!-- work_left_gain:end -->"


def run_case(name: str, px: int, steps: int, gpus: int) -> list[tuple[str, float, int, list]]:
    """(arm, CPU s, runs stopped, top 5) for each arm of :data:`ARMS`."""
    from planner.search import SearchSettings, search
    from profiles.catalog.models import load_model
    from profiles.costs.selection import cost_model_for
    from simulator import engine

    bounded = engine.Simulation.check_work_left
    cluster, model = copies(gpus // 8), load_model(name)
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    out = []
    try:
        for arm in ARMS:
            # the off arm: the engine's check does nothing, so runs stop on the clock alone
            engine.Simulation.check_work_left = bounded if arm == "on" else (lambda self, actor, index: None)
            start = time.process_time()
            result = search(model, cluster, cost, height_px=px, width_px=px, steps=steps,
                            settings=SearchSettings(jobs=1))
            top = [(c.plan.degrees.label(), c.plan.patches, tuple(c.plan.placement or ()), c.latency_s)
                   for c in result.ranked[:5]]
            out.append((arm, time.process_time() - start, result.counts["runs_stopped"], top))
    finally:
        engine.Simulation.check_work_left = bounded
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdout", action="store_true")
    args = parser.parse_args()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [BEGIN, "## What the work-left bound saves a search", "",
             f"`{COMMAND}` on {platform.machine()}, Python {platform.python_version()}, {stamp}; {load()} at the "
             "start. Copies of l40-2node, analytic L40 cost model, default settings, one process; each case "
             "searched with the bound on, off, on, off in one process. CPU seconds of the search.", "",
             "| model px steps | GPUs | CPU s (on, off, on, off) | on / off (sums) | runs stopped on / off | top 5 identical |",
             "|---|---|---|---|---|---|"]
    all_same = True
    for name, px, steps, gpus in CASES:
        arms = run_case(name, px, steps, gpus)
        on = sum(s for a, s, _, _ in arms if a == "on")
        off = sum(s for a, s, _, _ in arms if a == "off")
        stops = {a: n for a, _, n, _ in arms}
        same = all(top == arms[0][3] for _, _, _, top in arms)
        all_same = all_same and same
        lines.append(f"| {name} {px} {steps} | {gpus} | {', '.join(f'{s:.1f}' for _, s, _, _ in arms)} | "
                     f"{on / off:.2f} | {stops['on']} / {stops['off']} | {'yes' if same else 'NO'} |")
        print(lines[-1], file=sys.stderr, flush=True)
    lines += ["", f"{load()} at the end.", "", END]
    code = publish("\n".join(lines), page=ROOT / "docs" / "benchmarks.md", begin=BEGIN, end=END,
                   stdout_only=args.stdout)
    return code if all_same else 1  # the bound changed an answer: a bug, not a speed figure


if __name__ == "__main__":
    sys.exit(main())
