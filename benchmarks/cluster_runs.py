"""What one simulation of a cluster-scale search winner costs, under each of its placements (issue 14).

Why: at 256 GPUs and up nearly all of ``pfplan search``'s time is the full simulation of its
first wave (the five best-estimated shapes, each under every placement alternative, with no
limit to stop them), so the cost of one such run bounds the search from below. This times the
flux-dev 4096 px winners of the scaling table (docs/benchmarks.md) on copies of l40-2node:
each placement's simulation in this process, CPU seconds (``time.process_time``), the rounds of
transfers the network started one by one (those a collective's closed form ran are not counted),
and the simulated latency (which no speed-up may change).

    python benchmarks/cluster_runs.py [--gpus 256,512] [--repeats 1] [--pairwise-all-to-all]

``--pairwise-all-to-all`` runs the model before round 10 instead of today's: every all-to-all as
n − 1 rounds, in round k rank i sending to rank i + k (where today's sends to every peer at once,
:func:`simulator.collectives.all_to_all`), to show what that modelling choice costs the simulator.

Prints a Markdown table; nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.search_scaling import copies  # noqa: E402

WINNERS = {256: ({"pipefusion": 20, "ulysses": 12}, 20), 512: ({"pipefusion": 20, "ulysses": 24}, 20),
           64: ({"pipefusion": 8, "ulysses": 8}, 8)}
"""GPUs → (degrees, patches) of the flux-dev 4096 px, 28-step winner in the scaling table (rounds 9 and 10
pick the same shapes, docs/benchmarks.md; plans to time, not results)."""


def pairwise_all_to_all(net, devices, bytes_per_rank: float, messages: int = 1):
    """The all-to-all before round 10: n − 1 rounds, in round k rank i sends 1/n of its buffer to rank i + k."""
    from simulator import collectives

    n = len(devices)
    rounds = collectives._planned(net, ("all_to_all, pairwise", tuple(devices)),
                                  lambda: [[(devices[i], devices[(i + k) % n]) for i in range(n)] for k in range(1, n)])
    yield from collectives._rounds(net, rounds, bytes_per_rank / n, messages, planned=True)


def run(gpus: int, repeats: int) -> list[str]:
    from planner.search import prepare
    from profiles.catalog.models import load_model
    from profiles.costs.selection import cost_model_for
    from simulator.engine import simulate
    from simulator.network import FairShareNetwork
    from simulator.plan import Degrees, ParallelPlan

    degrees, patches = WINNERS[gpus]
    cluster, model = copies(gpus // 8), load_model("flux-dev")
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    shape = ParallelPlan(model="flux-dev", height_px=4096, width_px=4096, steps=28, degrees=Degrees(**degrees),
                         patches=patches, warmup_steps=1)
    rows = []
    started = [0]
    original = FairShareNetwork._start

    def counted(self, *args):
        started[0] += 1
        return original(self, *args)

    FairShareNetwork._start = counted
    try:
        for plan, placement in prepare(shape, model, cluster, cost):
            times = []
            for _ in range(repeats):
                started[0] = 0
                t0 = time.process_time()
                result = simulate(plan, model, cluster, cost)
                times.append(time.process_time() - t0)
            label = "×".join(f"{k}{v}" for k, v in degrees.items())
            rows.append(f"| {gpus} | {label} M={patches} | {placement.name} | "
                        f"{', '.join(f'{t:.1f}' for t in times)} | {started[0]:,} | {result.latency_s!r} |")
    finally:
        FairShareNetwork._start = original
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", default="256,512")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pairwise-all-to-all", action="store_true",
                        help="the model before round 10: every all-to-all as n - 1 pairwise rounds")
    args = parser.parse_args()
    if args.pairwise_all_to_all:
        from simulator import collectives

        collectives.ALGORITHMS["all_to_all"] = collectives.Algorithm(pairwise_all_to_all, lambda n: n - 1,
                                                                     lambda b, n: b / n)
    print("| GPUs | plan | placement | CPU s | rounds started one by one | latency s |")
    print("|---|---|---|---|---|---|")
    for gpus in (int(g) for g in args.gpus.split(",")):
        for row in run(gpus, args.repeats):
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
