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

from planner import commands_capacity
from profiles.cli_support import print_json
from planner.job import load_job, resolution_of, run_search, sha256_of
from planner.search import SearchSettings
from planner.simulate_chosen import default_jobs
from planner.search_format import CandidateRecord, SearchReport, SweepReport, latency_text, search_report
from planner.search_table import print_search_table
from planner.tables import text_console
from profiles.errors import InputError
from profiles.output_guard import guard_outputs, write_outputs
from simulator.plan_files import paths_relative_to
from simulator.plan import ParallelPlan, Provenance


def parse_resolutions(text: str) -> list[int]:
    """``"1024,2048"`` → [1024, 2048]."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"expected comma-separated pixel sides (1024,2048,4096), got {text!r}",
                         field="--resolutions") from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"expected positive pixel sides, got {text!r}", field="--resolutions")
    return sorted(set(values))


def sweep_path(output: Path, resolution: int) -> Path:
    """``plan.json`` → ``plan-2048px.json``."""
    return output.with_name(f"{output.stem}-{resolution}px{output.suffix or '.json'}")


def print_table(report: SearchReport, top: int) -> None:
    print_search_table(report, top)
    c = report.counts
    text_console().print(f"{c.get('shapes', 0)} plan shapes: {c.get('does_not_fit', 0)} do not fit, "
                      f"{c.get('not_runnable', 0)} not runnable (skipped), {c.get('simulated', 0)} simulated"
                      + (f" ({c['stopped']} stopped early: slower than the top plans, latency a lower bound)"
                         if c.get("stopped") else "") + "; "
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
                         f"{latency_text(runnable, ' s')}; rerun without --allow-unrunnable to write it")
    elif chosen is not best:
        notes.append(f"faster but not runnable by pfrun yet: #{best.rank} {best.label} (M={best.plan.patches}), "
                     f"{latency_text(best, ' s')} ({best.runnable_reason}); --allow-unrunnable writes it")
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
        runnable_only: bool = typer.Option(
            False, "--runnable-only",
            help="Only plans pfrun runs (every shape of the shipped families does; what is left: a family "
                 "whose runtime adapter lacks a capability, a PipeFusion patch whose tokens do not split "
                 "over the sequence-parallel ranks, PipeFusion without warm-up; docs/search.md)."),
        allow_unrunnable: bool = typer.Option(False, "--allow-unrunnable",
                                              help="Write the fastest plan even if pfrun cannot run it "
                                                   "(default: the best plan pfrun runs)."),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the chosen plan here."),
        results: Optional[Path] = typer.Option(None, "--results", help="Write every candidate (search.json)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
        resolutions: Optional[str] = typer.Option(None, "--resolutions",
                                                  help="Sweep: search each of these sides (e.g. 1024,2048,4096); "
                                                       "-o writes PLAN-<res>px.json each, --results one sweep file."),
        jobs: Optional[int] = typer.Option(None, min=1, help="Processes that simulate the best shapes side by side "
                                           "(default: the cores this process may use); any number gives the same answer."),
        frames: Optional[int] = typer.Option(None, min=1, help="Video frames (default: the model's; 1 for images)."),
    ) -> None:
        """Find the fastest plan that fits: degrees, patches, warm-up, stage split, placement."""
        if objective not in ("latency", "throughput"):
            raise InputError(f"expected latency or throughput, got {objective!r}", field="--objective")
        guard_outputs({"-o": output, "--results": results}, {"--topology": topology, "--model": model, "--profile": profile})
        cluster, preset, cost_model = load_job(topology, model, profile, frames)
        sweep = parse_resolutions(resolutions) if resolutions else None
        if sweep is not None and resolution is not None:
            raise InputError("give --resolution or --resolutions, not both", field="--resolutions")
        steps = steps if steps is not None else preset.default_steps
        settings = SearchSettings(objective=objective, min_warmup=min_warmup,  # type: ignore[arg-type]
                                  max_devices=max_gpus, runnable_only=runnable_only, simulate_top=top,
                                  jobs=jobs or default_jobs())
        console = text_console()
        done: list[tuple[SearchReport, ParallelPlan, Path | None]] = []
        for res in [resolution_of(preset, r) for r in (sweep or [resolution])]:
            result = run_search(cluster, preset, cost_model, resolution=res, steps=steps, settings=settings,
                                topology=topology)
            report = search_report(result, model=model, height_px=res, width_px=res, steps=steps,
                                   topology=cluster.topology.name, objective=objective, cost_model=cost_model.name)
            command = (f"pfplan search --topology {topology} --model {model} --resolution {res} --steps {steps}"
                       f"{f' --profile {profile}' if profile else ''} --objective {objective} "
                       f"--min-warmup {min_warmup}"
                       f"{f' --max-gpus {max_gpus}' if max_gpus else ''}{' --runnable-only' if runnable_only else ''}"
                       f"{' --allow-unrunnable' if allow_unrunnable else ''}{f' --frames {frames}' if frames else ''}")
            provenance = Provenance(command=command, topology=topology, topology_sha256=sha256_of(cluster.file),
                                    profile=profile, profile_sha256=sha256_of(profile))
            plan = finished_plan(report, provenance=provenance, allow_unrunnable=allow_unrunnable)
            if preset.is_video:  # the clip length the plan was searched for travels with it (pfrun reads it)
                plan = plan.model_copy(update={"frames": preset.default_frames})
            written = chosen_candidate(report, allow_unrunnable=allow_unrunnable)
            report = report.model_copy(update={"chosen_rank": written.rank, "topology_source": topology,
                                               "profile": profile})
            target = output if output is None or sweep is None else sweep_path(output, res)
            done.append((report, plan, target))
        staged = [(target, paths_relative_to(plan, target)) for _, plan, target in done if target is not None]
        if results is not None:
            staged.append((results, done[0][0] if sweep is None else SweepReport(searches=[d[0] for d in done])))
        write_outputs(staged)  # every output or none
        if json_out:
            rows = [{"plan": plan.model_dump(mode="json"),
                     "alternatives": [r.model_dump(mode="json", exclude={"plan"}) for r in report.candidates[:top]],
                     "counts": report.counts, "baseline_latency_s": report.baseline_latency_s}
                    for report, plan, _ in done]
            print_json(rows[0] if sweep is None else rows)
            return
        for report, plan, target in done:
            print_table(report, top)
            if target is not None:
                written = report.chosen
                console.print(f"wrote {target} (#{written.rank} {plan.degrees.label()}, predicted "
                              f"{latency_text(written, ' s')})", markup=False)
            for note in plan.notes[1:]:
                console.print(f"note: {note}", markup=False)
        console.print(cluster.topology.communication.describe(brief=True), markup=False)

    commands_capacity.register(app)
