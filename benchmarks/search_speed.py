"""Benchmark (run by hand, not a test): how long ``pfplan search`` takes, and which plans win.

Part 1 times the two searches issue #6 bounds at 10 s on the 2-core development machine,
each as a user runs it (a fresh ``python -m planner search`` process, import time
included), median of ``--repeat`` runs. Part 2 runs the search in-process over the
published comparisons of docs/references.md §2 and prints, for each, the winner and the best
PipeFusion-based (pipefusion > 1), sequence-parallel (ulysses or ring > 1, no
pipeline), DistriFusion and tensor-parallel plans with their rank, so the docs can state which trend the simulator
reproduces. Prints Markdown; paste it into docs/search.md with the command line.

    python benchmarks/search_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMED = [("pcie8", "pixart-alpha", 4096, 20), ("h100-nvlink8", "flux-dev", 1024, 28)]
SCALED = "scaled"
"""The GPU's analytic roofline times the factor pixart-alpha-a100-pcie-calibrated found for the A100:
a check that the borrowed PCIe communication does not win only because uncalibrated compute is too fast."""
TRENDS = [  # (topology, model, px, steps, compute profile, SCALED, or None for the GPU's analytic roofline)
    ("a100-pcie4", "pixart-alpha", 1024, 20, "pixart-alpha-a100-pcie-calibrated"),
    ("a100-pcie4", "pixart-alpha", 2048, 20, "pixart-alpha-a100-pcie-calibrated"),
    ("a100-pcie4", "pixart-alpha", 4096, 20, "pixart-alpha-a100-pcie-calibrated"),
    ("pcie8", "pixart-alpha", 1024, 20, None), ("pcie8", "pixart-alpha", 2048, 20, None),
    ("pcie8", "pixart-alpha", 4096, 20, None),
    ("l20x8", "pixart-alpha", 1024, 20, None), ("l20x8", "pixart-alpha", 2048, 20, None),
    ("l20x8", "pixart-alpha", 4096, 20, None),
    ("pcie8", "pixart-alpha", 2048, 20, SCALED), ("pcie8", "pixart-alpha", 4096, 20, SCALED),
    ("l20x8", "pixart-alpha", 2048, 20, SCALED), ("l20x8", "pixart-alpha", 4096, 20, SCALED),
    ("h100-nvlink8", "flux-dev", 1024, 28, "flux-dev-h100-sxm-calibrated"),
    ("h100-nvlink8", "flux-dev", 1024, 28, None),
]
LIMIT_S = 10.0


def time_cli(topology: str, model: str, resolution: int, steps: int, repeat: int) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "planner", "search", "--topology", topology, "--model", model,
           "--resolution", str(resolution), "--steps", str(steps), "--json"]
    walls, out = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        walls.append(time.perf_counter() - start)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr}")
        out = proc.stdout
    import json
    return statistics.median(walls), json.loads(out)["plan"]["degrees"] and " ".join(cmd[1:])


def kind(label: str) -> str:
    parts = {p.rstrip("0123456789") for p in label.split("×")}
    if "pipefusion" in parts:
        return "pipefusion"
    if parts & {"ulysses", "ring"}:
        return "sp"
    if "distrifusion" in parts:
        return "distrifusion"
    if "tensor" in parts:
        return "tensor"
    return "other"


def trend_row(topology: str, model_name: str, resolution: int, steps: int, profile: str | None,
              ideal: bool = False) -> str:
    """One search's winner and the best plan of each family; ``ideal``: the topology's
    communication reset to the data-sheet ideal (full link bandwidth, perfect overlap)."""
    from planner.search import SearchSettings, search
    from profiles.costs.selection import cost_model_for
    from profiles.catalog.models import load_model
    from profiles.topology.format import Communication
    from profiles.topology.graph import ClusterGraph, load_cluster

    model, cluster = load_model(model_name), load_cluster(topology)
    if ideal:
        cluster = ClusterGraph(cluster.topology.model_copy(update={"communication": Communication()}))
    gpu = cluster.device_gpu[cluster.devices[0]]
    if profile == SCALED:
        from profiles.costs.analytic import AnalyticCostModel, Efficiency
        from profiles.costs.profile_format import load_profile

        factor = load_profile("pixart-alpha-a100-pcie-calibrated").provenance.calibration.factor
        cost = AnalyticCostModel.for_gpu(model, gpu, efficiency=Efficiency(scale=factor))
        profile = f"analytic:{gpu} × {factor:.3g}"
    else:
        cost = cost_model_for(model, gpu, profile)
    result = search(model, cluster, cost, height_px=resolution, width_px=resolution, steps=steps,
                    settings=SearchSettings(simulate_top=10))
    ranked = [c for c in result.ranked if c.simulated]

    def best_of(k: str) -> str:
        for i, c in enumerate(ranked, 1):
            if kind(c.plan.degrees.label()) == k:
                return f"#{i} {c.plan.degrees.label()} M={c.plan.patches} {c.latency_s:.3g} s"
        return "not in the simulated top 10"
    win = ranked[0]
    base = f"{result.baseline_latency_s:.3g}" if result.baseline_latency_s else "-"
    comm = cluster.topology.communication
    return (f"| {topology} | {comm.bandwidth_efficiency:.2f} / {comm.overlap_efficiency:.2f} | {model_name} "
            f"{resolution} | {profile or cost.name} | {base} | {win.plan.degrees.label()} "
            f"M={win.plan.patches} {win.latency_s:.3g} s | {best_of('pipefusion')} | {best_of('sp')} | "
            f"{best_of('distrifusion')} | {best_of('tensor')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    print("| search | median wall s (fresh process) | limit | ok |\n|---|---|---|---|")
    for case in TIMED:
        wall, cmd = time_cli(*case, repeat=args.repeat)
        print(f"| `pfplan {cmd.split(' ', 2)[2]}` | {wall:.2f} | {LIMIT_S:g} | {'yes' if wall <= LIMIT_S else 'NO'} |")
    header = ("| topology | bandwidth / overlap efficiency | model px | compute | 1 GPU s | winner "
              "| best PipeFusion-based | best sequence-parallel | best DistriFusion | best tensor-parallel |\n"
              "|---|---|---|---|---|---|---|---|---|---|")
    print("\nThe shipped topologies (communication as calibrated or borrowed):\n")
    print(header)
    for case in TRENDS:
        print(trend_row(*case), flush=True)
    print("\nThe same searches with ideal communication (data-sheet link bandwidth, perfect overlap):\n")
    print(header)
    for case in TRENDS:
        print(trend_row(*case, ideal=True), flush=True)

if __name__ == "__main__":
    main()
