"""``pfplan validate``: how far a simulated trace was from the measured one of the same plan.

A thin shell over :mod:`planner.trace_compare`: load both traces, compare, print tables (or
JSON). Exit 0; with ``--max-error PCT`` exit 1 when the end-to-end error's magnitude is above
PCT (a gate for CI or a deployment); 2 on bad input (a file that is not a trace, two traces of
the same source, or of different plans).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from planner.trace_compare import TraceComparison, compare_files
from profiles.cli_support import err_console, out_console, print_json


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_comparison(c: TraceComparison) -> None:
    out_console.print(f"{c.model} {c.plan_label}: simulated ({c.simulated_device}) vs measured ({c.measured_device})",
                      markup=False)
    lat = c.latency
    top = Table(title=f"End to end (compared categories: {', '.join(c.compared_categories)})")
    for col in ("", "simulated ms", "measured ms", "error"):
        top.add_column(col, justify="left" if not col else "right")
    top.add_row("end of last compared event", _ms(lat.simulated_s), _ms(lat.measured_s), _pct(lat.error_pct))
    top.add_row("first event starts", _ms(lat.simulated_first_event_s), _ms(lat.measured_first_event_s), "")
    top.add_row("latency the producer reported", _ms(c.simulated_reported_latency_s),
                _ms(c.measured_reported_latency_s), "")
    out_console.print(top)
    cats = Table(title="Busy time per category and rank")
    for col in ("category", "rank", "simulated ms", "measured ms", "error"):
        cats.add_column(col, justify="left" if col == "category" else "right")
    for row in c.categories:
        cats.add_row(row.category, str(row.rank), _ms(row.simulated_s), _ms(row.measured_s), _pct(row.error_pct))
    out_console.print(cats)
    steps = Table(title="Step times")
    for col in ("step", "warm-up", "simulated ms", "measured ms", "error"):
        steps.add_column(col, justify="right")
    for s in c.steps:
        steps.add_row(str(s.step), "-" if s.warmup is None else ("yes" if s.warmup else "no"), _ms(s.simulated_s),
                      _ms(s.measured_s), _pct(s.error_pct))
    out_console.print(steps)
    u = c.compute_units
    worst = (f" at rank {u.worst_unit.rank} step {u.worst_unit.step} patch {'all' if u.worst_unit.patch is None else u.worst_unit.patch} "
             f"stage {u.worst_unit.stage}") if u.worst_unit else ""
    out_console.print(f"compute units matched: {u.matched}; measured/simulated median {_ratio(u.median_ratio)} "
                      f"(warm-up {_ratio(u.warmup_median_ratio)}, after warm-up {_ratio(u.steady_median_ratio)}), "
                      f"range {_ratio(u.min_ratio)}-{_ratio(u.max_ratio)}, worst {_ratio(u.worst_ratio)}{worst}",
                      markup=False)
    if not c.one_sided:
        out_console.print("both traces have the same categories, ranks, steps and compute units", markup=False)
    for item in c.one_sided:
        if item.kind == "folded":
            out_console.print(f"timed apart only in the {item.side} trace, so added to its compute: {item.name}, "
                              f"{_ms(item.busy_s)} ms", markup=False)
        else:
            out_console.print(f"only in the {item.side} trace ({item.kind}, not counted as error): {item.name}, "
                              f"{_ms(item.busy_s)} ms", markup=False)


def register(app: typer.Typer) -> None:
    @app.command("validate")
    def validate_cmd(
        simulated: Path = typer.Argument(..., help="Simulated trace (pfplan simulate --trace)."),
        measured: Path = typer.Argument(..., help="Measured trace of the same plan (pfrun --trace)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
        max_error: Optional[float] = typer.Option(None, "--max-error", min=0,
                                                  help="Exit 1 when |end-to-end error| exceeds this many percent."),
    ) -> None:
        """Compare a simulated and a measured trace of one plan (exit 0; 1 above --max-error)."""
        result = compare_files(simulated, measured)
        if json_out:
            print_json(result.model_dump(mode="json"))
        else:
            print_comparison(result)
        if max_error is not None:
            err = result.latency.error_pct
            if err is None or abs(err) > max_error:
                shown = "undefined (simulated 0)" if err is None else f"{err:+.1f}%"
                err_console.print(f"end-to-end error {shown} exceeds --max-error {max_error:g}%", markup=False)
                raise typer.Exit(1)
