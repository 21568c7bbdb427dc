"""Re-simulate a validation suite's measured runs with the model as it is now, and without the stage
messages' CPU (``send_cpu_s`` / ``recv_cpu_s`` of the links profile), so one set of measurements
compares two models: the suite's runs take minutes and drift with the box's load, a simulation does not.

    python benchmarks/validation_suite.py --repeats 5 --runs-json /tmp/suite4.json
    python benchmarks/resimulate_suite.py /tmp/suite4.json

Prints per plan the measured median, the prediction recorded when the suite ran, the model's now with
and without the message CPU, and their errors, then MAPE, Kendall τ and
whether the measured-fastest plan is the predicted-fastest under each.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.validation_suite import LINKS, MODEL, PROFILE, TOPOLOGY, kendall_tau, make_plan  # noqa: E402
from profiles.catalog.models import load_model  # noqa: E402
from profiles.costs.selection import cost_model_for, dtype_bytes_of  # noqa: E402
from profiles.topology.graph import load_cluster  # noqa: E402
from simulator.engine import simulate  # noqa: E402
from simulator.plan import validate  # noqa: E402


def predictions(rows: list[dict], steps: int, *, message_cpu: bool, profile: str = PROFILE) -> list[float]:
    from planner.commands_simulate import link_fits_from

    model, cluster = load_model(MODEL), load_cluster(TOPOLOGY)
    fits = link_fits_from(LINKS)
    if not message_cpu:
        fits = {cls: dataclasses.replace(fit, send_cpu_s=0.0, recv_cpu_s=0.0) for cls, fit in fits.items()}
    out = []
    for row in rows:
        plan = make_plan(row["spec"], steps)
        validate(plan, model, cluster)
        cost = cost_model_for(model, cluster.gpu_of(plan.devices(cluster)[0]), profile)
        out.append(simulate(plan, model, cluster, cost, link_fits=fits, dtype_bytes=dtype_bytes_of(cost)).latency_s)
    return out


def summary(name: str, rows: list[dict], predicted: list[float]) -> str:
    measured = [r["measured_s"] for r in rows]
    errors = [100.0 * (p - m) / m for p, m in zip(predicted, measured)]
    fastest_m = min(range(len(rows)), key=measured.__getitem__)
    fastest_p = min(range(len(rows)), key=predicted.__getitem__)
    return (f"{name}: MAPE {statistics.fmean(abs(e) for e in errors):.1f}%, τ {kendall_tau(predicted, measured):+.2f}, "
            f"measured fastest `{rows[fastest_m]['spec'] or 'serial'}`, predicted fastest "
            f"`{rows[fastest_p]['spec'] or 'serial'}`")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="A --runs-json file of benchmarks/validation_suite.py.")
    parser.add_argument("--profile", default=PROFILE,
                        help=f"Compute profile to price with (default the shipped {PROFILE}; e.g. the one the runs "
                             "were predicted with, from git).")
    args = parser.parse_args()
    try:
        data = json.loads(args.runs.read_text())
        rows, steps = data["rows"], int(data["steps"])
        command, load = str(data["command"]), float(data["load"])
        if not rows or not all(isinstance(r["spec"], str) and float(r["measured_s"]) > 0
                               and float(r["predicted_s"]) > 0 for r in rows):
            raise ValueError("rows: expected plans with a spec and positive measured_s, predicted_s")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"{args.runs}: expected a --runs-json file of validation_suite.py ({exc})", file=sys.stderr)
        return 2
    from profiles.errors import InputError

    try:
        now = predictions(rows, steps, message_cpu=True, profile=args.profile)
        before = predictions(rows, steps, message_cpu=False, profile=args.profile)
    except (InputError, ValueError) as exc:
        print(f"{args.runs} with --profile {args.profile}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    recorded = [r["predicted_s"] for r in rows]
    print(f"{command} (load {load:.1f} at its start); profile {args.profile}, links {LINKS}")
    print("| plan | measured s | predicted then | error | predicted now | error | now without message CPU | error |")
    print("|---|---|---|---|---|---|---|---|")
    for row, r, p, b in zip(rows, recorded, now, before):
        m = row["measured_s"]
        print(f"| `{row['spec'] or 'serial'}` | {m:.3f} | {r:.3f} | {100 * (r - m) / m:+.1f}% | {p:.3f} | "
              f"{100 * (p - m) / m:+.1f}% | {b:.3f} | {100 * (b - m) / m:+.1f}% |")
    print(summary("predicted when run", rows, recorded))
    print(summary("now", rows, now))
    print(summary("now without message CPU", rows, before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
