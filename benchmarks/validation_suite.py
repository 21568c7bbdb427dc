"""Measured validation suite: run CPU plans with pfrun, simulate them with the shipped CPU profile,
write docs/fidelity.md (per-plan and per-strategy error, MAPE, Kendall τ, top-1 agreement).

Run from the repository root on an idle machine (this VM: 2 cores, 2 ranks of 1 thread)::

    python benchmarks/validation_suite.py                 # 13 plans × 3 repeats, writes docs/fidelity.md
    python benchmarks/validation_suite.py --plans 3 --repeats 1 --stdout   # a quick smoke run
    python benchmarks/validation_suite.py --steps 20      # the same plans at 20 steps, its own section

At the preset's 4 steps the VAE decode, which every plan runs whole on one rank, is about half of
each run, so the fastest plans lie within a few per cent of one another (under the run-to-run noise of
this shared machine); ``--steps N`` runs every plan that does not set its own steps at N, where the
denoising loop, which the strategies split, dominates (a plan that sets its own steps scales by N / 4, so
the ranking compares like with like). Each step count writes its own section.

Every strategy pfrun executes is covered (serial, pipefusion, ulysses, ring, tensor,
distrifusion, cfg, data) on ``pixart-tiny`` at 256 px, 4 steps, on ``cpu2``. Repeats are
interleaved (plan 1, 2, …, n, then again), so a slow spell of a loaded machine spreads over
all plans instead of landing on one; the measurement is the median of the repeats of
``latency_s`` as pfrun reports it (the loop and the VAE decode, not process start). Nothing
here is fitted: the profile is the shipped ``pixart-tiny-cpu`` (``pfplan profile compute``),
the links the shipped ``cpu2-links`` fits (``pfplan profile links``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._doc_sections import replace_section  # noqa: E402
from profiles.catalog.models import load_model  # noqa: E402
from profiles.costs.selection import cost_model_for, dtype_bytes_of  # noqa: E402
from profiles.topology.graph import load_cluster  # noqa: E402
from simulator.engine import simulate  # noqa: E402
from simulator.plan import plan_from_spec, validate  # noqa: E402

MODEL, TOPOLOGY, PROFILE, LINKS, RES, STEPS = "pixart-tiny", "cpu2", "pixart-tiny-cpu", "cpu2-links", 256, 4
PLANS: tuple[tuple[str, str], ...] = (
    ("serial", ""),
    ("pipefusion", "pipefusion=2,patches=2,warmup=1"),
    ("ulysses", "ulysses=2"),
    ("ring", "ring=2"),
    ("tensor", "tensor=2"),
    ("distrifusion", "distrifusion=2,warmup=1"),
    ("cfg", "cfg=2"),
    ("data", "data=2"),
    ("pipefusion", "pipefusion=2,patches=4,warmup=1"),
    ("pipefusion", "pipefusion=2,patches=2,warmup=2"),
    ("pipefusion", "pipefusion=2,patches=8,warmup=1"),
    ("distrifusion", "distrifusion=2,warmup=2"),
    ("ulysses", "ulysses=2,steps=8"),
)
"""(strategy, spec): the strategy the row counts for, and its ``--parallel`` spec (``steps=N`` overrides STEPS)."""
PAGE = ROOT / "docs" / "fidelity.md"
BEGIN, END = "<!-- validation_suite:begin -->", "<!-- validation_suite:end -->"


def markers(steps: int) -> tuple[str, str]:
    """The section a run at ``steps`` owns: the preset's step count keeps the original markers."""
    if steps == STEPS:
        return BEGIN, END
    return f"<!-- validation_suite_steps{steps}:begin -->", f"<!-- validation_suite_steps{steps}:end -->"


def make_plan(spec: str, default_steps: int = STEPS):
    parts = [p for p in spec.split(",") if p and not p.startswith("steps=")]
    own = next((int(p[6:]) for p in spec.split(",") if p.startswith("steps=")), None)
    # a plan's own step count is relative to the preset's: at --steps N it scales by N / STEPS
    steps = default_steps if own is None else max(1, round(own * default_steps / STEPS))
    return plan_from_spec(MODEL, ",".join(parts), height_px=RES, width_px=RES, steps=steps, topology=TOPOLOGY)


def predicted(plan):
    """The simulator's result for ``plan`` with the shipped CPU profile and links."""
    from planner.commands_simulate import link_fits_from

    model, cluster = load_model(MODEL), load_cluster(TOPOLOGY)
    validate(plan, model, cluster)
    cost = cost_model_for(model, cluster.gpu_of(plan.devices(cluster)[0]), PROFILE)
    return simulate(plan, model, cluster, cost, link_fits=link_fits_from(LINKS), dtype_bytes=dtype_bytes_of(cost))


def predicted_s(plan) -> float:
    return predicted(plan).latency_s


def predicted_breakdown(plan) -> dict[str, float]:
    """Seconds by category (the prediction's breakdown) and ``total``."""
    result = predicted(plan)
    return {**result.prediction.breakdown_s, "total": result.latency_s}


def measure_s(plan_file: Path) -> float:
    run = subprocess.run([sys.executable, "-m", "runtime", "--plan", str(plan_file), "--json"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    if run.returncode:
        raise SystemExit(f"pfrun failed on {plan_file}: {run.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(run.stdout)["latency_s"])


def kendall_tau(a: list[float], b: list[float]) -> float:
    pairs = list(combinations(range(len(a)), 2))
    score = sum(1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1 if (a[i] - a[j]) * (b[i] - b[j]) < 0 else 0
                for i, j in pairs)
    return score / len(pairs) if pairs else float("nan")


def section(rows: list[dict], *, repeats: int, wall_s: float, command: str, load: tuple[float, float],
            steps: int = STEPS) -> str:
    errs = [r["error_pct"] for r in rows]
    mape = statistics.fmean(abs(e) for e in errs)
    tau = kendall_tau([r["predicted_s"] for r in rows], [r["measured_s"] for r in rows])
    fastest_measured = min(rows, key=lambda r: r["measured_s"])
    fastest_predicted = min(rows, key=lambda r: r["predicted_s"])
    from profiles.costs.profile_format import load_profile

    made = {name: load_profile(name).provenance.created_at for name in (PROFILE, LINKS)}
    begin, end = markers(steps)
    lines = [begin, f"Generated by `{command}` in {wall_s:.0f} s: {MODEL} at {RES} px on `{TOPOLOGY}` "
             f"(2 ranks, 1 thread each), simulated with the shipped `{PROFILE}` profile (measured "
             f"{made[PROFILE]}) and `{LINKS}` links (measured {made[LINKS]}); "
             f"measured: median of {repeats} interleaved pfrun runs' `latency_s`. "
             f"Error = (predicted − measured) / measured. 1-minute load average {load[0]:.1f} at the start, "
             f"{load[1]:.1f} at the end ({os.cpu_count()} cores; above ~1 the runs are not idle).", "",
             "| # | strategy | plan | steps | measured s (runs) | predicted s | error |", "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        runs = ", ".join(f"{v:.3f}" for v in r["runs"])
        lines.append(f"| {i} | {r['strategy']} | `{r['spec'] or 'serial'}` | {r['steps']} | {r['measured_s']:.3f} "
                     f"({runs}) | {r['predicted_s']:.3f} | {r['error_pct']:+.1f}% |")
    lines += ["", "| strategy | plans | MAPE | mean error |", "|---|---|---|---|"]
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r["error_pct"] for r in rows if r["strategy"] == strategy]
        lines.append(f"| {strategy} | {len(mine)} | {statistics.fmean(abs(e) for e in mine):.1f}% | "
                     f"{statistics.fmean(mine):+.1f}% |")
    same = fastest_measured is fastest_predicted
    lines += ["", f"End to end over {len(rows)} plans: **MAPE {mape:.1f}%**, worst {max(errs, key=abs):+.1f}%, "
              f"Kendall τ {tau:+.2f}; measured fastest `{fastest_measured['spec'] or 'serial'}`, predicted fastest "
              f"`{fastest_predicted['spec'] or 'serial'}` ({'same' if same else 'different'})."]
    if not same:
        lines += ["", head_to_head(fastest_measured, fastest_predicted)]
    lines.append(end)
    return "\n".join(lines)


def head_to_head(measured: dict, predicted: dict) -> str:
    """How far apart the measured-fastest and the predicted-fastest plans were, run by run (the runs are
    interleaved: repetition ``i`` of one ran next to repetition ``i`` of the other), and as predicted.
    Context for a miss, not a criterion: the miss stands as measured."""
    a, b = measured["spec"] or "serial", predicted["spec"] or "serial"
    wins = sum(x < y for x, y in zip(measured["runs"], predicted["runs"]))
    gap = 100.0 * (predicted["measured_s"] - measured["measured_s"]) / measured["measured_s"]
    predicted_gap = 100.0 * (measured["predicted_s"] - predicted["predicted_s"]) / predicted["predicted_s"]
    return (f"`{a}` against `{b}`: `{a}` was the faster in {wins} of {len(measured['runs'])} repetitions, its "
            f"median {gap:.1f} % below; predicted, `{b}` is {predicted_gap:.2f} % below `{a}`.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=len(PLANS), help="Use the first N plans (smoke runs).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=STEPS,
                        help=f"Steps of every plan that does not set its own (default {STEPS}, the preset's).")
    parser.add_argument("--stdout", action="store_true", help="Print the section instead of writing docs/fidelity.md.")
    parser.add_argument("--runs-json", type=Path, default=None,
                        help="Also write every plan's measured runs and prediction here (to re-simulate the same "
                             "measurements with another model: benchmarks/resimulate_suite.py).")
    args = parser.parse_args()
    if args.runs_json is not None and args.runs_json.exists():
        parser.error(f"--runs-json: {args.runs_json} exists; expected a new file")
    if args.runs_json is not None and not (args.runs_json.parent.is_dir() and os.access(args.runs_json.parent, os.W_OK)):
        parser.error(f"--runs-json: {args.runs_json.parent} is not a writable folder")
    if args.steps < 1:
        parser.error("--steps: expected a positive number of steps")
    chosen = PLANS[:args.plans]
    start = time.monotonic()
    load_start = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (strategy, spec) in enumerate(chosen):
            plan = make_plan(spec, args.steps)
            path = Path(tmp) / f"plan{i}.json"
            path.write_text(plan.model_dump_json())
            files.append(path)
            rows.append({"strategy": strategy, "spec": spec, "steps": plan.steps, "predicted_s": predicted_s(plan),
                         "runs": []})
        for rep in range(args.repeats):
            for row, path in zip(rows, files):
                row["runs"].append(measure_s(path))
                print(f"repeat {rep + 1}: {row['spec'] or 'serial'}: {row['runs'][-1]:.3f} s", file=sys.stderr,
                      flush=True)
    for row in rows:
        row["measured_s"] = statistics.median(row["runs"])
        row["error_pct"] = 100.0 * (row["predicted_s"] - row["measured_s"]) / row["measured_s"]
    command = "python benchmarks/validation_suite.py" + ("" if args.plans == len(PLANS) else f" --plans {args.plans}") \
        + ("" if args.repeats == 3 else f" --repeats {args.repeats}") \
        + ("" if args.steps == STEPS else f" --steps {args.steps}")
    text = section(rows, repeats=args.repeats, wall_s=time.monotonic() - start, command=command,
                   load=(load_start, os.getloadavg()[0]), steps=args.steps)
    if args.runs_json is not None:  # first: a failure here leaves the docs as they were
        args.runs_json.write_text(json.dumps({"command": command, "steps": args.steps, "load": load_start,
                                              "rows": rows}, indent=1))
    if not args.stdout:
        replace_section(PAGE, *markers(args.steps), text, title="# Fidelity: predictions against measured CPU runs")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
