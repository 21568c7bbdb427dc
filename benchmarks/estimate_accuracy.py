"""How close is the closed-form estimate to the simulation? Writes a section of docs/benchmarks.md.

Run from the repository root::

    python benchmarks/estimate_accuracy.py [--samples 300] [--seed 0] [--stdout]

Draws random plans (seeded) on four shipped topologies and four models at 1024 px, 20 steps,
keeps the valid ones, and reports estimate / simulation latency ratios.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiles.costs.selection import cost_model_for  # noqa: E402
from benchmarks._doc_sections import publish  # noqa: E402
from profiles.catalog.models import load_model  # noqa: E402
from profiles.topology.graph import load_cluster  # noqa: E402
from simulator.engine import simulate  # noqa: E402
from simulator.estimate import estimate_latency_s  # noqa: E402
from simulator.plan import Degrees, ParallelPlan, violations  # noqa: E402

TOPOLOGIES = ("a100-pcie4", "pcie8", "a100-nvlink8", "l40-2node")
MODELS = ("pixart-alpha", "sd3-medium", "hunyuan-dit", "flux-dev")
BEGIN, END = "<!-- estimate_accuracy:begin -->", "<!-- estimate_accuracy:end -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stdout", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = []
    for _ in range(args.samples):
        topo, name = rng.choice(TOPOLOGIES), rng.choice(MODELS)
        model, cluster = load_model(name), load_cluster(topo)
        kind = rng.choice(["hybrid", "distrifusion", "tensor"])
        d = {"data": rng.choice([1, 2]), "cfg": rng.choice([1, 2])}
        if kind == "hybrid":
            d.update(pipefusion=rng.choice([1, 2, 4, 8]), ulysses=rng.choice([1, 2]), ring=rng.choice([1, 2]))
        else:
            d[kind] = rng.choice([2, 4])
        plan = ParallelPlan(model=name, height_px=1024, width_px=1024, steps=20, degrees=Degrees(**d),
                            patches=rng.choice([1, 2, 4, 8, 16]), warmup_steps=rng.choice([0, 1, 2]))
        if violations(plan, model, cluster):
            continue
        cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
        ratio = estimate_latency_s(plan, model, cluster, cost) / simulate(plan, model, cluster, cost).latency_s
        rows.append((ratio, topo, name, plan.degrees.label(), plan.patches))
    ratios = sorted(r[0] for r in rows)
    worst = sorted(rows)[:3]
    lines = [BEGIN, "## Closed-form estimate vs simulation", "",
             f"`python benchmarks/estimate_accuracy.py --samples {args.samples} --seed {args.seed}`: "
             f"{len(rows)} valid random plans (1024 px, 20 steps, analytic cost models).", "",
             "| estimate / simulation | min | 5th pct | median | max | within ±3 % |", "|---|---|---|---|---|---|",
             f"| ratio | {ratios[0]:.3f} | {ratios[len(ratios) // 20]:.3f} | {statistics.median(ratios):.3f} | "
             f"{ratios[-1]:.3f} | {sum(abs(r - 1) <= 0.03 for r in ratios)}/{len(ratios)} |", "",
             "Largest underestimates (the estimate ignores link contention):", ""]
    lines += [f"- {r:.3f}: {name} on {topo}, {label}, M={m}" for r, topo, name, label, m in worst]
    lines += ["", END]
    return publish("\n".join(lines), page=ROOT / "docs" / "benchmarks.md", begin=BEGIN, end=END,
                   stdout_only=args.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
