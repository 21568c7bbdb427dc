"""``pfplan capacity`` and ``pfplan report``: GPUs and cost that keep the tail under an SLO; an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from planner.capacity import (ArrivalSpec, FleetResult, PlanService, capacity_options, fastest_per_device_count,
                              offered_rate, price_fleet, rate_curve, simulate_fleet, size_for_slo, size_mix)
from planner.capacity_format import CapacityReport, CurvePoint, FleetRecord, RateCurve
from planner.job import load_job, resolution_of, run_search
from planner.prices import load_prices
from planner.report import write_report
from planner.search import SearchSettings
from planner.simulate_chosen import default_jobs
from planner.serving import ROUTINGS
from planner.tables import Column, print_rows, text_console
from profiles.cli_support import out_console, print_json
from profiles.costs.selection import dtype_bytes_of
from profiles.errors import InputError
from profiles.loading import write_model_json
from profiles.output_guard import guard_outputs


def parse_mix(text: str) -> list[tuple[int, int]]:
    """``"4x2,1x3"`` → [(4 GPUs per replica, 2 replicas), (1, 3)]."""
    out = []
    for part in text.replace("×", "x").split(","):
        try:
            gpus, count = (int(v) for v in part.strip().split("x"))
        except ValueError:
            raise InputError(f"expected GPUSxREPLICAS[,GPUSxREPLICAS...] (e.g. 4x2,1x3), got {part!r}",
                             field="--mix") from None
        if gpus < 1 or count < 0:
            raise InputError(f"expected positive GPUs and replicas, got {part!r}", field="--mix")
        out.append((gpus, count))
    return out


def money(value: float | None) -> str:
    return "-" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.3g}")


def fleet_rows(fleets: list[FleetResult], slo_s: float | None) -> list[list[str]]:
    return [[f.label, str(f.gpus), str(f.boxes), f"{f.p50_s:.3g}", f"{f.p99_s:.3g}",
             "-" if f.slo_attainment is None else f"{f.slo_attainment:.1%}", f"{f.utilisation:.0%}",
             money(f.usd_per_hour), money(f.usd_per_1000_images)] for f in fleets]


def video_s_per_gpu_hour(option: object, clip_s: float) -> float:
    """Seconds of video one GPU makes in an hour under this plan: clips/s per replica × 3600 × clip length / GPUs."""
    return option.replica_throughput * 3600 * clip_s / option.devices_per_replica  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    @app.command("capacity")
    def capacity_command(
        topology: str = typer.Option(..., help="Topology of one serving box (pcie8)."),
        model: str = typer.Option(..., help="Model preset, preset file or diffusers config."),
        resolution: Optional[int] = typer.Option(None, min=1, help="Image side in pixels (default: the model's)."),
        steps: Optional[int] = typer.Option(None, min=1, help="Diffusion steps (default: the model's)."),
        rate: Optional[float] = typer.Option(None, help="Requests (images) per second; a trace gives its own."),
        slo_s: Optional[float] = typer.Option(None, "--slo-s", help="Latency objective (seconds) at --percentile."),
        percentile: float = typer.Option(99.0, help="Which latency percentile must meet --slo-s."),
        arrivals: str = typer.Option("poisson", help="poisson, bursty, or a request-trace file "
                                                     "(CSV time_s,resolution,steps or JSON Lines)."),
        burst_factor: float = typer.Option(4.0, help="bursty: how much busier a burst is than the calm."),
        burst_length_s: float = typer.Option(30.0, "--burst-length-s", help="bursty: mean length of a burst "
                                             "(bursts take 20 percent of the time; at least 5 cycles are simulated)."),
        routing: str = typer.Option("least-work", help=f"Queue routing: {', '.join(ROUTINGS)}."),
        max_batch: int = typer.Option(1, min=1, help="Requests a replica may serve together (where priced)."),
        requests: int = typer.Option(20000, min=100, help="Requests simulated per fleet (p99 from 4,000 varies about ±20 percent, from 20,000 about ±6)."),
        seed: int = typer.Option(0, help="Seed of the arrival process."),
        mix: Optional[str] = typer.Option(None, help="Also simulate this fleet: GPUSxREPLICAS,... of the "
                                                     "fastest plan per GPU count (e.g. 4x2,1x3)."),
        prices: Optional[Path] = typer.Option(None, help="Price table (default: profiles/data/prices.yaml)."),
        profile: Optional[str] = typer.Option(None, help="Profile JSON (default: analytic roofline)."),
        min_warmup: int = typer.Option(1, min=0, help="Warm-up steps of stale strategies."),
        top: int = typer.Option(8, min=1, help="Options to show."),
        results: Optional[Path] = typer.Option(None, "--results", help="Write capacity.json (for pfplan report)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
        jobs: Optional[int] = typer.Option(None, min=1, help="Processes that simulate the best shapes side by side "
                                           "(default: the cores this process may use); any number gives the same answer."),
        frames: Optional[int] = typer.Option(None, min=1, help="Video frames (default: the model's; 1 for images)."),
    ) -> None:
        """Fewest GPUs (and boxes) whose simulated tail latency meets --slo-s at the traffic, and their cost."""
        if rate is not None and rate <= 0:
            raise InputError(f"expected a positive rate, got {rate}", field="--rate")
        if slo_s is not None and slo_s <= 0:
            raise InputError(f"expected a positive latency objective, got {slo_s}", field="--slo-s")
        if not 0 < percentile <= 100:
            raise InputError(f"expected a percentile in (0, 100], got {percentile}", field="--percentile")
        if routing not in ROUTINGS:
            raise InputError(f"expected one of {', '.join(ROUTINGS)}, got {routing!r}", field="--routing")
        kind = arrivals if arrivals in ("poisson", "bursty") else "trace"
        if kind != "trace" and rate is None:
            raise InputError("expected --rate (or a request-trace file as --arrivals)", field="--rate")
        table = load_prices(prices)
        cluster, preset, cost_model = load_job(topology, model, profile, frames)
        clip_s = preset.clip_seconds()
        res = resolution_of(preset, resolution)
        steps = steps if steps is not None else preset.default_steps
        spec = ArrivalSpec(kind=kind, requests=requests, seed=seed, burst_factor=burst_factor,
                           mean_burst_s=burst_length_s,
                           trace_path=arrivals if kind == "trace" else None)
        reqs = spec.draw(rate or 1.0, (res, steps))
        box = len(cluster.devices)
        settings = SearchSettings(objective="latency", min_warmup=min_warmup, best_per_device_count=True,
                                  jobs=jobs or default_jobs())
        result = run_search(cluster, preset, cost_model, resolution=res, steps=steps, settings=settings,
                            topology=topology)
        dtype = dtype_bytes_of(cost_model)
        fastest = fastest_per_device_count(result)
        services = {n: PlanService(c.plan, preset, cluster, cost_model, max_batch=max_batch, dtype_bytes=dtype,
                                   latency_s=c.latency_s) for n, c in sorted(fastest.items())}
        floors = {o.devices_per_replica: o for o in capacity_options(
            result, rate_images_per_s=offered_rate(reqs), slo_s=None, box_devices=box)}
        fleets: list[FleetResult] = []
        for n, svc in services.items():
            fleet = size_for_slo(svc, reqs, slo_s=slo_s, percentile=percentile, routing=routing,  # type: ignore[arg-type]
                                 box_devices=box)
            if fleet is not None:
                fleets.append(fleet)
        if slo_s is not None and len(services) > 1:
            fast = min(services.values(), key=lambda s: s.service_s(s.shape, 1))
            lean = max(services.values(), key=lambda s: s.requests_per_service
                       / s.service_s(s.shape, s.requests_per_service) / s.devices)
            if fast is not lean:
                mixed = size_mix(fast, lean, reqs, slo_s=slo_s, percentile=percentile, routing=routing,  # type: ignore[arg-type]
                                 box_devices=box)
                if mixed is not None:
                    fleets.append(mixed)
        if mix:
            chosen = []
            for gpus, count in parse_mix(mix):
                if gpus not in services:
                    raise InputError(f"no simulated plan uses {gpus} GPUs; available: "
                                     f"{', '.join(map(str, services))}", field="--mix")
                chosen.append((services[gpus], count))
            fleets.append(simulate_fleet(chosen, reqs, routing=routing, slo_s=slo_s,  # type: ignore[arg-type]
                                         percentile=percentile, box_devices=box))
        for f in fleets:
            price_fleet(f, cluster, table)
        fleets.sort(key=lambda f: (not f.meets_slo, f.gpus, f.usd_per_hour or 0, f.p99_s))
        make = (lambda r: ArrivalSpec(kind=kind, requests=min(requests, 5000), seed=seed, burst_factor=burst_factor,
                                      mean_burst_s=burst_length_s).draw(r, (res, steps))) if kind != "trace" else None
        curves = []
        if make is not None:
            for f in [f for f in fleets if f.meets_slo][:3]:
                svcs = [(services[gpus], count) for _, gpus, count in f.mix if count]
                points = rate_curve(svcs, make, routing=routing, slo_s=slo_s, box_devices=box)  # type: ignore[arg-type]
                curves.append(RateCurve(label=f.label, gpus=f.gpus, points=[CurvePoint(**p) for p in points]))
        report = CapacityReport(model=preset.name, topology=cluster.topology.name, resolution=res, steps=steps,
                                rate=fleets[0].rate if fleets else (rate or 0.0), slo_s=slo_s, percentile=percentile,
                                arrivals=arrivals, routing=routing, requests=len(reqs),
                                options=[FleetRecord(**f.as_dict()) for f in fleets], curves=curves)
        if results is not None:
            write_model_json(results, report)
        if json_out:
            out = []
            for f in fleets[:top]:
                row = f.as_dict()
                if len(f.mix) == 1:
                    label, gpus, count = f.mix[0]
                    floor = floors.get(gpus)
                    row.update(devices_per_replica=gpus, replicas=count, total_devices=f.gpus,
                               latency_s=services[gpus].service_s(services[gpus].shape, 1),
                               replica_throughput=floor.replica_throughput if floor else None,
                               floor_replicas=floor.replicas if floor else None)
                    if clip_s and floor:
                        row["video_s_per_gpu_hour"] = video_s_per_gpu_hour(floor, clip_s)
                out.append(row)
            print_json(out)
            return
        if not any(f.meets_slo for f in fleets):
            fastest_s = min(s.service_s(s.shape, 1) for s in services.values())
            out_console.print(f"no fleet meets p{percentile:g} ≤ {slo_s} s; the fastest plan alone takes "
                              f"{fastest_s:.3g} s", markup=False)
            raise typer.Exit(1)
        what = f"{kind} arrivals at {fleets[0].rate:.3g} req/s" + (f", p{percentile:g} ≤ {slo_s:g} s" if slo_s else "")
        console = text_console()
        console.print(f"{preset.name} {res}px, {steps} steps on {cluster.topology.name} boxes: {what}, "
                          f"{routing} routing, {len(reqs)} requests simulated", markup=False)
        print_rows([Column("fleet", wrap=True), Column("GPUs"), Column("boxes"), Column("p50 s"),
                    Column(f"p{percentile:g} s" if percentile != 99 else "p99 s"), Column("in SLO"),
                    Column("util"), Column("$/h"), Column("$/1k img")],
                   fleet_rows([f for f in fleets[:top]], slo_s))
        best = next(f for f in fleets if f.meets_slo)
        floor_text = ""
        if len(best.mix) == 1 and best.mix[0][1] in floors and all(r.shape == (res, steps) for r in reqs):
            floor = floors[best.mix[0][1]]
            floor_text = (f" (the no-queueing floor, {floor.replicas} replicas = {floor.total_devices} GPUs, "
                          f"would run {floor.utilisation:.0%} busy)")
        console.print(f"best: {best.label} = {best.gpus} GPUs in {best.boxes} × {cluster.topology.name}, "
                          f"p99 {best.p99_s:.3g} s" + (f", ${best.usd_per_hour:.2f}/h, "
                                                       f"${best.usd_per_1000_images:.3g} per 1,000 images"
                                                       if best.usd_per_hour is not None else "") + floor_text,
                          markup=False)
        if clip_s and len(best.mix) == 1 and best.mix[0][1] in floors:
            console.print(f"video: {video_s_per_gpu_hour(floors[best.mix[0][1]], clip_s):.3g} s of "
                          f"{preset.default_frames}-frame clips per GPU-hour at full load", markup=False)
        if best.price_source:
            console.print(f"price: {best.price_source}", markup=False)
        for note in sorted({n for f in fleets for n in f.batching}):
            console.print(f"batching: {note}", markup=False)

    @app.command("report")
    def report_command(
        source: Path = typer.Argument(..., help="plan.json or search.json (pfplan search --results)."),
        output: Path = typer.Option(..., "-o", "--output", help="HTML file to write."),
        capacity: Optional[Path] = typer.Option(None, "--capacity", help="capacity.json (pfplan capacity "
                                                                         "--results) to draw its curves."),
    ) -> None:
        """A self-contained plotly HTML report: Pareto front, time breakdown, memory, timeline, capacity."""
        guard_outputs({"-o": output}, {"SOURCE": source, "--capacity": capacity})
        names = write_report(source, output, capacity=capacity)
        out_console.print(f"wrote {output} ({len(names)} plans)", markup=False)
