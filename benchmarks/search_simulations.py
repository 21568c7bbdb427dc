"""Where one search's simulation time goes: every event simulation it runs, timed (issue 14).

Runs ``pfplan search``'s search on one process (``jobs=1``, so each run's CPU time is this
process's) over a copy of l40-2node with ``--gpus`` L40s, and prints one line per simulation the
search asks for: its CPU seconds, how it ended (finished, or stopped at a limit), the step at which
its state started to repeat (``simulator.periodic``: the run is cut there) or ``no`` when it never
did, the plan and its limit. ``--cprofile N`` also prints the N functions with the most own time.
It prints and writes nothing to docs/ (docs/benchmarks.md quotes a ``--gpus 512`` run).

    python benchmarks/search_simulations.py [--model flux-dev] [--px 4096] [--steps 28] [--gpus 64] [--cprofile 15]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flux-dev")
    parser.add_argument("--px", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=28)
    parser.add_argument("--gpus", type=int, default=64,
                        help="a multiple of 8 (copies of an 8-GPU node); 64 by default, a few seconds under make bench")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    args = parser.parse_args()

    from benchmarks.search_scaling import copies
    from planner import simulated
    from planner.search import SearchSettings, search
    from profiles.catalog.models import load_model
    from profiles.costs.selection import cost_model_for
    from simulator import periodic
    from simulator.deadline import SlowerThan

    settled: list[int] = []
    step_began = periodic.StepWatch.step_began

    def watched(self, step: int, index: int) -> None:
        step_began(self, step, index)
        if self.found is not None and not settled:
            settled.append(step)

    periodic.StepWatch.step_began = watched  # type: ignore[method-assign]
    simulate_prediction = simulated.simulate_prediction
    runs: list[float] = []

    def timed(plan, *a, **k):
        settled.clear()
        start, ended = time.process_time(), "finished"
        try:
            return simulate_prediction(plan, *a, **k)
        except SlowerThan:
            ended = "stopped"
            raise
        finally:
            runs.append(time.process_time() - start)
            limit = k.get("stop_after_s")
            print(f"{runs[-1]:7.2f} s  {ended:8s}  settled at step {settled[0] if settled else 'no':>3}  "
                  f"{plan.degrees.label()} M={plan.patches}  limit {'none' if limit is None else f'{limit:.4g} s'}",
                  flush=True)

    simulated.simulate_prediction = timed
    cluster = copies(args.gpus // 8)
    model = load_model(args.model)
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]))
    profile = None
    if args.cprofile:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    start = time.process_time()
    result = search(model, cluster, cost, height_px=args.px, width_px=args.px, steps=args.steps,
                    settings=SearchSettings(jobs=1))
    total = time.process_time() - start
    if profile is not None:
        import pstats

        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.cprofile)
    best = result.best
    print(f"{len(runs)} simulations, {sum(runs):.1f} s of the search's {total:.1f} s CPU; winner "
          f"{best.plan.degrees.label()} M={best.plan.patches} {best.latency_s:.4g} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
