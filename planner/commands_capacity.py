"""``pfplan capacity`` and ``pfplan report``: how many GPUs a traffic level needs; an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from planner.capacity import capacity_options
from profiles.cli_support import out_console, print_json
from planner.job import load_job, resolution_of, run_search
from planner.report import write_report
from planner.search import SearchSettings
from profiles.errors import InputError
from profiles.output_guard import guard_outputs


def register(app: typer.Typer) -> None:
    @app.command("capacity")
    def capacity_command(
        topology: str = typer.Option(..., help="Topology of one serving box (pcie8)."),
        model: str = typer.Option(..., help="Model preset, preset file or diffusers config."),
        resolution: Optional[int] = typer.Option(None, min=1, help="Image side in pixels (default: the model's)."),
        steps: Optional[int] = typer.Option(None, min=1, help="Diffusion steps (default: the model's)."),
        rate: float = typer.Option(..., help="Images per second to serve."),
        slo_s: Optional[float] = typer.Option(None, "--slo-s", help="Latency objective per image (seconds)."),
        profile: Optional[str] = typer.Option(None, help="Profile JSON (default: analytic roofline)."),
        min_warmup: int = typer.Option(1, min=0, help="Warm-up steps of stale strategies."),
        top: int = typer.Option(8, min=1, help="Options to show."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """GPUs and replicas of each good plan needed to serve --rate images/s within --slo-s."""
        if rate <= 0:
            raise InputError(f"expected a positive rate, got {rate}", field="--rate")
        if slo_s is not None and slo_s <= 0:
            raise InputError(f"expected a positive latency objective, got {slo_s}", field="--slo-s")
        cluster, preset, cost_model = load_job(topology, model, profile)
        res = resolution_of(preset, resolution)
        steps = steps if steps is not None else preset.default_steps
        settings = SearchSettings(objective="latency", min_warmup=min_warmup, best_per_device_count=True)
        result = run_search(cluster, preset, cost_model, resolution=res, steps=steps, settings=settings,
                            topology=topology)
        options = capacity_options(result, rate_images_per_s=rate, slo_s=slo_s,
                                   box_devices=len(cluster.devices))
        if json_out:
            print_json([o.as_dict() for o in options[:top]])
            return
        if not options:
            out_console.print(f"no plan meets the {slo_s} s latency objective; the fastest takes "
                              f"{min(c.latency_s for c in result.ranked if c.simulated):.3g} s", markup=False)
            raise typer.Exit(1)
        table = Table(title=f"{preset.name} {res}px at {rate:g} images/s on {cluster.topology.name} boxes"
                            + (f", latency ≤ {slo_s:g} s" if slo_s else ""))
        for col in ("plan", "GPUs/replica", "latency s", "img/s per replica", "replicas", "GPUs", "boxes",
                    "utilisation"):
            table.add_column(col)
        for o in options[:top]:
            table.add_row(o.label, str(o.devices_per_replica), f"{o.latency_s:.3g}",
                          f"{o.replica_throughput:.3g}", str(o.replicas), str(o.total_devices), str(o.boxes),
                          f"{o.utilisation:.0%}")
        out_console.print(table)
        best = options[0]
        out_console.print(f"best: {best.replicas} × {best.label} = {best.total_devices} GPUs "
                          f"({best.boxes} × {cluster.topology.name})", markup=False)

    @app.command("report")
    def report_command(
        source: Path = typer.Argument(..., help="plan.json or search.json (pfplan search --results)."),
        output: Path = typer.Option(..., "-o", "--output", help="HTML file to write."),
    ) -> None:
        """A self-contained plotly HTML report: latency vs GPUs per strategy, top plans, memory."""
        guard_outputs({"-o": output}, {"SOURCE": source})
        names = write_report(source, output)
        out_console.print(f"wrote {output} ({len(names)} plans)", markup=False)
