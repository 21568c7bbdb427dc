"""Where a pfrun run's ``latency_s`` goes, span by span, beside what the simulator charges.

Run from the repository root (timing: normal priority, nothing else running)::

    python benchmarks/where_time_goes.py                       # writes its section of docs/fidelity.md
    python benchmarks/where_time_goes.py --repeats 3 --stdout  # prints instead

Each plan of :data:`PLANS` (pixart-tiny 256 px, 4 steps on ``cpu2``, as the validation
suite) runs ``--repeats`` times in a row (after one untimed run that builds nothing in
this process: every run is a fresh launch in new rank processes, the serial plan's one rank
too, as pfrun's), with the trace the runtime records
on every rank. ``latency_s`` is the time from the start barrier to the last rank's end; on
each rank it is split into its spans: the transformer forward (``compute``: the whole
forward for the serial loop, one band of blocks elsewhere; ``embed`` and ``final`` where
they are spans of their own), the scheduler step, the VAE decode, collectives (each op's
calls, count and mean per call beside the links profile's back-to-back curve at the same
bytes), point-to-point sends and receives, and what no span covers (Python between
passes, guidance arithmetic, setting up the image). The simulator's breakdown of the same
plan (shipped profiles) stands beside it. Nothing is fitted: this only shows where the
time is.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._doc_sections import replace_section  # noqa: E402
from benchmarks.validation_suite import LINKS, MODEL, PROFILE, make_plan, predicted_breakdown  # noqa: E402

PLANS = ("", "data=2", "cfg=2", "ulysses=2", "tensor=2", "pipefusion=2,patches=2,warmup=1", "ring=2",
         "distrifusion=2,warmup=1")
PAGE = ROOT / "docs" / "fidelity.md"
BEGIN, END = "<!-- where_time_goes:begin -->", "<!-- where_time_goes:end -->"
GROUPS = {"compute": "forward", "embed": "forward", "final": "forward", "scheduler": "scheduler", "vae": "vae",
          "collective": "collectives", "send": "p2p", "recv": "p2p"}
COLUMNS = ("forward", "scheduler", "vae", "collectives", "p2p", "no span")


def measure(spec: str, repeats: int) -> dict:
    """Median per rank of each span group over ``repeats`` fresh runs, and per-op collective calls."""
    from profiles.catalog.models import load_model
    from runtime.run import execute, job_for

    job = job_for(make_plan(spec), load_model(MODEL))
    execute(job, fresh_process=True)  # a first launch warms the file cache; its numbers are dropped
    runs = []
    for _ in range(repeats):
        res = execute(job, fresh_process=True)  # serial too: a new rank process, as a pfrun command's
        ranks = []
        for events in res.events:
            groups: dict[str, float] = defaultdict(float)
            calls: dict[str, list[tuple[float, int]]] = defaultdict(list)
            end = max((e["ts"] + e["dur"] for e in events), default=0.0) / 1e6
            for e in events:
                groups[GROUPS.get(e["cat"], e["cat"])] += e["dur"] / 1e6
                if e["cat"] == "collective":
                    calls[e["name"]].append((e["dur"] / 1e6, int(e["args"].get("bytes", 0))))
            groups["no span"] = end - sum(groups.values())
            ranks.append({"end": end, "groups": dict(groups), "calls": dict(calls)})
        runs.append({"latency": res.latency_s, "ranks": ranks})
    world = len(runs[0]["ranks"])
    out = {"latency": statistics.median(r["latency"] for r in runs), "runs": [r["latency"] for r in runs], "ranks": []}
    for k in range(world):
        groups = {c: statistics.median(r["ranks"][k]["groups"].get(c, 0.0) for r in runs) for c in COLUMNS}
        names = {n for r in runs for n in r["ranks"][k]["calls"]}
        calls = {}
        for n in sorted(names):
            every = [c for r in runs for c in r["ranks"][k]["calls"].get(n, [])]
            calls[n] = (len(every) / repeats, statistics.fmean(d for d, _ in every), statistics.median(b for _, b in every))
        out["ranks"].append({"end": statistics.median(r["ranks"][k]["end"] for r in runs), "groups": groups,
                             "calls": calls})
    return out


def curve_s(op: str, nbytes: int) -> float | None:
    """The links profile's back-to-back time of one ``op`` call of 2 ranks at ``nbytes`` per rank."""
    from planner.commands_simulate import link_fits_from

    name = {"all_to_all": "all_to_all", "all_reduce": "all_reduce", "all_gather": "all_gather",
            "gather prediction": "all_gather", "cfg exchange": "all_gather"}.get(op)
    for fit in link_fits_from(LINKS).values():
        for c in fit.collectives:
            if c.op == name and c.group_size == 2:
                return c.time_s(nbytes)
    return None


def section(rows: list[tuple[str, dict, dict]], *, repeats: int, command: str, load: tuple[float, float]) -> str:
    lines = [BEGIN, f"Generated by `{command}`: {MODEL} 256 px, 4 steps (unless a plan sets `steps=`) on `cpu2`, "
             f"median of {repeats} fresh pfrun launches per plan; predicted with the shipped `{PROFILE}` and "
             f"`{LINKS}`. Milliseconds. 1-minute load "
             f"average {load[0]:.1f} at the start, {load[1]:.1f} at the end ({os.cpu_count()} cores).", "",
             "| plan | rank | latency (runs) | forward | scheduler | vae | collectives | p2p | no span | "
             "predicted: total · forward+overhead · vae · comm |", "|---|---|---|---|---|---|---|---|---|---|"]
    for spec, got, pred in rows:
        for k, r in enumerate(got["ranks"]):
            g = r["groups"]
            head = (f"{got['latency'] * 1e3:.0f} ({', '.join(f'{v * 1e3:.0f}' for v in got['runs'])})" if k == 0
                    else "")
            fwd = sum(pred.get(c, 0.0) for c in ("embed", "compute", "final", "overhead", "warmup"))
            comm = pred.get("exposed_communication", 0.0) + pred.get("bubble", 0.0)
            tail = (f"{pred['total'] * 1e3:.0f} · {fwd * 1e3:.0f} · {pred.get('vae', 0.0) * 1e3:.0f} · "
                    f"{comm * 1e3:.0f}") if k == 0 else ""
            lines.append(f"| `{spec or 'serial'}` | {k} | {head} | " + " | ".join(f"{g[c] * 1e3:.1f}" for c in COLUMNS)
                         + f" | {tail} |")
    lines += ["", "Collective calls per rank 0 (count per run, mean per call, the links profile's back-to-back time "
              "at the same bytes):", "", "| plan | call | calls | bytes | mean ms | back-to-back ms |",
              "|---|---|---|---|---|---|"]
    for spec, got, _ in rows:
        for name, (n, mean, nbytes) in got["ranks"][0]["calls"].items():
            ref = curve_s(name, int(nbytes))
            lines.append(f"| `{spec or 'serial'}` | {name} | {n:.0f} | {nbytes:.0f} | {mean * 1e3:.2f} | "
                         f"{'-' if ref is None else f'{ref * 1e3:.2f}'} |")
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stdout", action="store_true")
    parser.add_argument("--only", default="", help="plans separated by ';' (default: every plan "
                        "of PLANS; 'serial' for the serial plan); implies --stdout")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    start = time.monotonic()
    rows = []
    chosen = [("" if s == "serial" else s) for s in args.only.split(";") if s] if args.only else list(PLANS)
    args.stdout = args.stdout or bool(args.only)
    for spec in chosen:
        got = measure(spec, args.repeats)
        rows.append((spec, got, predicted_breakdown(make_plan(spec))))
        print(f"{spec or 'serial'}: {got['latency'] * 1e3:.0f} ms ({time.monotonic() - start:.0f} s)", file=sys.stderr)
    command = "python benchmarks/where_time_goes.py" + ("" if args.repeats == 5 else f" --repeats {args.repeats}")
    text = section(rows, repeats=args.repeats, command=command, load=(load, os.getloadavg()[0]))
    if not args.stdout:
        replace_section(PAGE, BEGIN, END, text, title="# Fidelity: predictions against measured CPU runs")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
