"""``pfplan search``, ``pfplan capacity`` and ``pfplan report``: the planner's answers.

Thin shells over :mod:`planner.search`, :mod:`planner.capacity` and :mod:`planner.report`:
they load the inputs, draw a progress bar on stderr while searching, print a table (or
JSON) and write files atomically. The plan written carries its prediction, its
provenance (topology and profile with their sha256, tool version, date, the command) and
a note when ``pfrun`` cannot run it yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from planner import commands_capacity
from profiles.cli_support import out_console, print_json
from planner.job import load_job, resolution_of, run_search, sha256_of
from planner.search import GB, SearchSettings
from planner.search_format import CandidateRecord, SearchReport, search_report
from profiles.errors import InputError
from profiles.output_guard import guard_outputs, write_outputs
from simulator.plan_files import paths_relative_to
from simulator.plan import ParallelPlan, Provenance


def gb(value: int | float) -> str:
    return f"{value / GB:.1f}"


def traffic_text(by_class: dict[str, int]) -> str:
    parts = [f"{cls} {gb(v)}" for cls, v in sorted(by_class.items()) if v > 0]
    return ", ".join(parts) or "-"


def print_table(report: SearchReport, top: int) -> None:
    table = Table(title=f"{report.model} {report.height_px}px, {report.steps} steps on {report.topology} "
                        f"({report.objective}, {report.cost_model})")
    for col in ("#", "plan", "GPUs", "M", "W", "placement", "latency s", "speed-up", "img/s",
                "mem GB (peak/cap)", "traffic GB", "runnable", "why it lost"):
        table.add_column(col, overflow="fold")
    for rec in report.candidates[:top]:
        table.add_row(str(rec.rank), rec.label, str(rec.devices), str(rec.plan.patches),
                      str(rec.plan.warmup_steps), rec.placement_name,
                      f"{rec.latency_s:.3g}" + ("" if rec.simulated else " (est)"),
                      f"{rec.speedup_over_one_gpu:.2f}×" if rec.speedup_over_one_gpu else "-",
                      f"{rec.throughput_images_per_s:.3g}", f"{gb(rec.peak_memory_bytes)}/{gb(rec.capacity_bytes)}",
                      traffic_text(rec.traffic_bytes_by_route_class),
                      "yes" if rec.runnable_reason is None else "no", rec.lost_because or "chosen")
    out_console.print(table)
    c = report.counts
    out_console.print(f"{c.get('shapes', 0)} plan shapes: {c.get('does_not_fit', 0)} do not fit, "
                      f"{c.get('not_runnable', 0)} not runnable (skipped), {c.get('simulated', 0)} simulated; "
                      f"serial on one device: "
                      + (f"{report.baseline_latency_s:.3g} s" if report.baseline_latency_s else "does not fit"),
                      markup=False)


def chosen_candidate(report: SearchReport, *, allow_unrunnable: bool) -> CandidateRecord:
    """The plan to write: the best one ``pfrun`` can execute, unless told to take the fastest."""
    best = report.candidates[0]
    if allow_unrunnable or best.runnable_reason is None:
        return best
    return next((r for r in report.candidates if r.runnable_reason is None), best)


def finished_plan(report: SearchReport, *, provenance: Provenance, allow_unrunnable: bool = False) -> ParallelPlan:
    chosen = chosen_candidate(report, allow_unrunnable=allow_unrunnable)
    best = report.candidates[0]
    notes = [f"chosen by pfplan search ({report.objective}) among {report.counts.get('shapes', 0)} shapes; "
             f"placement: {chosen.placement_name}"]
    if chosen.runnable_reason:
        notes.append(f"not runnable: {chosen.runnable_reason}")
        runnable = next((r for r in report.candidates if r.runnable_reason is None), None)
        if runnable is not None:
            notes.append(f"best runnable plan: #{runnable.rank} {runnable.label} (M={runnable.plan.patches}), "
                         f"{runnable.latency_s:.3g} s; rerun without --allow-unrunnable to write it")
    elif chosen is not best:
        notes.append(f"faster but not runnable by pfrun yet: #{best.rank} {best.label} (M={best.plan.patches}), "
                     f"{best.latency_s:.3g} s ({best.runnable_reason}); --allow-unrunnable writes it")
    return chosen.plan.model_copy(update={"provenance": provenance, "notes": notes})


def register(app: typer.Typer) -> None:
    @app.command("search")
    def search_command(
        topology: str = typer.Option(..., help="Topology file or shipped name (pcie8)."),
        model: str = typer.Option(..., help="Model preset, preset file or diffusers config."),
        resolution: Optional[int] = typer.Option(None, min=1, help="Image side in pixels (default: the model's)."),
        steps: Optional[int] = typer.Option(None, min=1, help="Diffusion steps (default: the model's)."),
        profile: Optional[str] = typer.Option(None, help="Profile JSON (default: the GPU's analytic roofline)."),
        objective: str = typer.Option("latency", help="latency or throughput (images/s)."),
        min_warmup: int = typer.Option(1, min=0, help="Warm-up steps every stale strategy runs (quality floor)."),
        max_gpus: Optional[int] = typer.Option(None, min=1, help="Use at most this many devices."),
        top: int = typer.Option(10, min=1, help="Alternatives to show (and to simulate)."),
        runnable_only: bool = typer.Option(False, "--runnable-only", help="Only plans pfrun runs today."),
        allow_unrunnable: bool = typer.Option(False, "--allow-unrunnable",
                                              help="Write the fastest plan even if pfrun cannot run it yet "
                                                   "(default: the best plan pfrun runs)."),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the chosen plan here."),
        results: Optional[Path] = typer.Option(None, "--results", help="Write every candidate (search.json)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Find the fastest plan that fits: degrees, patches, warm-up, stage split, placement."""
        if objective not in ("latency", "throughput"):
            raise InputError(f"expected latency or throughput, got {objective!r}", field="--objective")
        guard_outputs({"-o": output, "--results": results}, {"--topology": topology, "--model": model, "--profile": profile})
        cluster, preset, cost_model = load_job(topology, model, profile)
        res = resolution_of(preset, resolution)
        steps = steps if steps is not None else preset.default_steps
        settings = SearchSettings(objective=objective, min_warmup=min_warmup,  # type: ignore[arg-type]
                                  max_devices=max_gpus, runnable_only=runnable_only, simulate_top=top)
        result = run_search(cluster, preset, cost_model, resolution=res, steps=steps, settings=settings,
                            topology=topology)
        report = search_report(result, model=model, height_px=res, width_px=res, steps=steps,
                               topology=cluster.topology.name, objective=objective, cost_model=cost_model.name)
        command = (f"pfplan search --topology {topology} --model {model} --resolution {res} --steps {steps}"
                   f"{f' --profile {profile}' if profile else ''} --objective {objective} --min-warmup {min_warmup}"
                   f"{f' --max-gpus {max_gpus}' if max_gpus else ''}{' --runnable-only' if runnable_only else ''}"
                   f"{' --allow-unrunnable' if allow_unrunnable else ''}")
        provenance = Provenance(command=command, topology=topology, topology_sha256=sha256_of(cluster.file),
                                profile=profile, profile_sha256=sha256_of(profile))
        plan = finished_plan(report, provenance=provenance, allow_unrunnable=allow_unrunnable)
        write_outputs([(output, paths_relative_to(plan, output)), (results, report)])  # both or neither
        if json_out:
            print_json({"plan": plan.model_dump(mode="json"),
                        "alternatives": [r.model_dump(mode="json", exclude={"plan"}) for r in report.candidates[:top]],
                        "counts": report.counts, "baseline_latency_s": report.baseline_latency_s})
            return
        print_table(report, top)
        out_console.print(cluster.topology.communication.describe(brief=True), markup=False)
        if output is not None:
            written = chosen_candidate(report, allow_unrunnable=allow_unrunnable)
            out_console.print(f"wrote {output} (#{written.rank} {plan.degrees.label()}, predicted "
                              f"{written.latency_s:.3g} s)", markup=False)
        for note in plan.notes[1:]:
            out_console.print(f"note: {note}", markup=False)

    commands_capacity.register(app)
