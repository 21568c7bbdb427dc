"""Benchmark: simulated vs measured, per strategy pfrun runs, on CPU ranks (``pfplan validate``).

Why: issue 11's Must-show "a simulated-vs-measured row for each new strategy on CPU": every
strategy that only now runs is also one whose simulator model had never been held against a
measurement; the fidelity issue (#13) uses these rows. Whatever the error is, the row is
written: nothing here is fitted. Each row is the user's own flow, run through the CLIs:

    pfplan plan new --model M --topology T --parallel SPEC --resolution 128 --steps 4 --profile P -o plan.json
    pfplan simulate --plan plan.json --profile P --links cpu2-links --trace sim.json
    pfrun --plan plan.json --trace meas.json
    pfplan validate sim.json meas.json --json

Two-rank rows run on ``cpu2``; USP and PipeFusion × Ulysses / × Ring need 4 ranks and run on
``cpu4``, which on a 2-core machine is oversubscribed (4 processes on 2 cores): their measured
side is mostly scheduling, and the section says so. The 1-minute load average is read before
and after the runs. Timing: run at normal priority, on an otherwise idle machine if possible.

    python -m benchmarks.runtime_validation [--stdout-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from benchmarks._doc_sections import publish

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "runtime.md"
BEGIN, END = "<!-- runtime_validation:begin -->", "<!-- runtime_validation:end -->"
PX, STEPS = 128, 4
LINKS = "cpu2-links"
"""The measured links of this box (`pfplan profile links ... --collectives --in-loop`): the same the
fidelity suite uses; cpu4's figures are copied from cpu2 (its topology file says so)."""

ROWS: tuple[tuple[str, str, str, str], ...] = (
    # (preset, --parallel spec, topology, profile)
    ("flux-tiny", "tensor=2", "cpu2", "flux-tiny-cpu"),
    ("flux-tiny", "ulysses=2", "cpu2", "flux-tiny-cpu"),
    ("flux-tiny", "ring=2", "cpu2", "flux-tiny-cpu"),
    ("flux-tiny", "distrifusion=2,warmup=1", "cpu2", "flux-tiny-cpu"),
    ("sd3-tiny", "ulysses=2", "cpu2", "sd3-tiny-cpu"),
    ("sd3-tiny", "ring=2", "cpu2", "sd3-tiny-cpu"),
    ("flux-tiny", "ulysses=2,ring=2", "cpu4", "flux-tiny-cpu"),
    ("flux-tiny", "pipefusion=2,ulysses=2,patches=2,warmup=1", "cpu4", "flux-tiny-cpu"),
    ("flux-tiny", "pipefusion=2,ring=2,patches=2,warmup=1", "cpu4", "flux-tiny-cpu"),
    ("flux-tiny", "pipefusion=2,ulysses=2,patches=8,warmup=1", "cpu4", "flux-tiny-cpu"),
)
"""Every strategy that runs since issue 11, on a joint-attention family (Flux; SD3 for the
sequence-parallel pair too), and the 4-rank composed shapes (the last: 1-row patches split by tokens)."""


def cli(module: str, *args: str) -> str:
    """Run ``python -m module args`` in the repository; its stdout (a failure raises with its stderr)."""
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[-400:]}")
    return done.stdout


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def busy(comparison: dict, category: str, rank: int = 0) -> tuple[float | None, float | None]:
    for row in comparison["categories"]:
        if row["category"] == category and row["rank"] == rank:
            return row["simulated_s"], row["measured_s"]
    return None, None


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.3g}"


def row(preset: str, spec: str, topology: str, profile: str, work: Path) -> str:
    plan, sim, meas = work / "plan.json", work / "sim.json", work / "meas.json"
    cli("planner", "plan", "new", "--model", preset, "--topology", topology, "--parallel", spec,
        "--resolution", str(PX), "--steps", str(STEPS), "--profile", profile, "-o", str(plan))
    cli("planner", "simulate", "--plan", str(plan), "--profile", profile, "--links", LINKS, "--trace", str(sim))
    cli("runtime", "--plan", str(plan), "--trace", str(meas))
    c = json.loads(cli("planner", "validate", str(sim), str(meas), "--json"))
    lat = c["latency"]
    comp, coll = busy(c, "compute"), busy(c, "communication")
    err = lat.get("error_pct")
    return (f"| {preset} {spec} | {topology} | {ms(lat['simulated_s'])} / {ms(lat['measured_s'])} "
            f"({'-' if err is None else f'{err:+.0f}%'}) | {ms(comp[0])} / {ms(comp[1])} | "
            f"{ms(coll[0])} / {ms(coll[1])} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdout-only", action="store_true")
    args = parser.parse_args(argv)
    before = loadavg()
    lines = ["| plan (`--parallel`) | topology | end to end sim / meas ms (error) | compute rank 0 sim / meas ms "
             "| communication rank 0 sim / meas ms |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for preset, spec, topology, profile in ROWS:
            try:
                lines.append(row(preset, spec, topology, profile, Path(tmp)))
            except RuntimeError as exc:  # the row is written whatever happens
                lines.append(f"| {preset} {spec} | {topology} | failed: {str(exc).replace('|', '/')[:200]} | | |")
            print(lines[-1], flush=True)
    section = "\n".join([
        BEGIN,
        f"Written by `python -m benchmarks.runtime_validation` on {date.today().isoformat()} "
        f"(tiny presets, {PX} px, {STEPS} steps, the shipped `*-tiny-cpu` profiles; 1-minute load average "
        f"{before} before, {loadavg()} after, on the 2-core VM). `cpu4` rows run 4 ranks on 2 cores "
        "(oversubscribed: their measured side is mostly scheduling). Nothing is fitted to these rows.",
        "",
        *lines,
        END,
    ])
    return publish(section, page=DOC, begin=BEGIN, end=END, stdout_only=args.stdout_only)


if __name__ == "__main__":
    sys.exit(main())
