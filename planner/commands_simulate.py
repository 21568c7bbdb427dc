"""``pfplan simulate``: predict latency, memory and traffic of one plan on one topology.

A thin shell over :func:`simulator.engine.simulate`: build or load the plan, check it, pick
the cost model (a profile, or the topology GPU's analytic roofline), simulate, print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from profiles.cli_support import out_console, print_json
from profiles.costs.selection import cost_model_for, dtype_bytes_of
from profiles.errors import InputError
from profiles.costs.profile_format import CollectiveCurve
from profiles.catalog.models import load_model
from profiles.topology.graph import load_cluster
from simulator.engine import SimulationResult, simulate
from simulator.memory import GIB
from simulator.network import NETWORK_MODELS, CollectiveTiming, LinkFit
from profiles.output_guard import guard_outputs
from simulator.plan import ParallelPlan, plan_from_spec, validate
from simulator.plan_files import load_plan, plan_model
from simulator.trace import write_trace


def build_plan(*, plan_file: Optional[Path], parallel: Optional[str], model: Optional[str],
               resolution: Optional[int], height: Optional[int], width: Optional[int],
               steps: Optional[int], topology: Optional[str]) -> ParallelPlan:
    """The plan from ``--plan`` or from ``--model``/``--parallel`` and friends (exactly one of the two)."""
    if (plan_file is None) == (parallel is None):
        raise InputError("give exactly one of --plan FILE or --parallel SPEC", field="--plan/--parallel")
    if plan_file is not None:
        given = [flag for flag, value in (("--model", model), ("--resolution", resolution), ("--height", height),
                                          ("--width", width), ("--steps", steps)) if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} describe a --parallel run; with --plan the plan file says them",
                             field=given[0])
        plan = load_plan(plan_file)
        return plan.model_copy(update={"topology": topology or plan.topology})
    if model is None:
        raise InputError("--parallel needs --model", field="--model")
    preset = load_model(model)
    size = resolution if resolution is not None else preset.default_resolution
    return plan_from_spec(model, parallel or "", height_px=height or size, width_px=width or size,
                          steps=steps if steps is not None else preset.default_steps, topology=topology)


def link_fits_from(profile: str) -> dict[str, LinkFit]:
    """Measured latency and bandwidth per route class from a profile's ``links`` section, with its
    measured collectives attached when the profile measured one route class (the one they ran over)."""
    from profiles.costs.profile_format import load_profile

    loaded = load_profile(profile)
    curves = tuple(call_timing(c) for c in loaded.collectives if c.points)
    fits = {fit.route_class: LinkFit(fit.latency_us + fit.in_loop_extra_us, fit.bandwidth_gb_s,
                                     curves if len(loaded.links) == 1 else (),
                                     send_cpu_s=fit.in_loop_send_cpu_us * 1e-6,
                                     recv_cpu_s=min(fit.in_loop_recv_cpu_us, fit.latency_us + fit.in_loop_extra_us)
                                     * 1e-6)
            for fit in loaded.links}
    if not fits:
        raise InputError(f"profile {profile} has no measured links (make one with `pfplan profile links`)",
                         field="--links")
    return fits


def call_timing(curve: CollectiveCurve) -> CollectiveTiming:
    """A profile's collective as the simulator times a call of it.

    Where the profile measured calls inside a compute loop (``in_loop_points``) those are the
    times: that is how the runtime calls collectives, between blocks, and back-to-back timings
    can be far off either way (gloo's all-reduce of 64 KiB on this VM: 3.8 ms back to back
    against 1.5 ms a call in a run). Above the largest in-loop size the back-to-back curve
    continues, shifted by the in-loop difference at that size. Without in-loop points: the
    back-to-back points plus the single in-loop extra."""
    back = tuple((p.bytes, p.seconds) for p in curve.points)
    if not curve.in_loop_points:
        return CollectiveTiming(curve.op, curve.group_size, back, curve.bandwidth_gb_s, curve.in_loop_extra_us * 1e-6)
    looped = [(p.bytes, p.seconds) for p in curve.in_loop_points]
    top_bytes, top_s = max(looped)
    shift = top_s - _interpolated(back, top_bytes)
    above = [(b, max(t + shift, top_s)) for b, t in back if b > top_bytes]
    return CollectiveTiming(curve.op, curve.group_size, tuple(sorted(looped + above)), curve.bandwidth_gb_s)


def _interpolated(points: tuple[tuple[int, float], ...], nbytes: int) -> float:
    """The measured back-to-back time at ``nbytes``, linear between the raw points (no hull: the
    in-loop difference is taken against what was measured at that size)."""
    pts = sorted(points)
    if nbytes <= pts[0][0]:
        return pts[0][1]
    for (b0, t0), (b1, t1) in zip(pts, pts[1:]):
        if nbytes <= b1:
            return t0 + (nbytes - b0) / (b1 - b0) * (t1 - t0)
    return pts[-1][1]


def result_json(plan: ParallelPlan, result: SimulationResult) -> dict:
    return {"plan": plan.model_dump(mode="json", exclude={"prediction", "provenance"}),
            "prediction": result.prediction.model_dump(mode="json"), "fits": result.fits, "oom": result.oom,
            "utilisation": result.utilisation,
            "memory_bytes": {d: m.as_dict() for d, m in result.memory.items()}}


def print_result(plan: ParallelPlan, result: SimulationResult, gpu_of: dict[str, str]) -> None:
    p = result.prediction
    out_console.print(f"{plan.model} {plan.height_px}×{plan.width_px}, {plan.steps} steps, {plan.degrees.label()}"
                      f" (patches {plan.patches}, warm-up {plan.warmup_steps}) — cost model {p.cost_model}",
                      markup=False)
    out_console.print(f"predicted latency: {p.latency_s:.4f} s", markup=False)
    table = Table(title="Where the time goes (bottleneck stage group)")
    table.add_column("part")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    for key, value in p.breakdown_s.items():
        table.add_row(key, f"{value:.4f}", f"{100 * value / p.latency_s:.1f}%" if p.latency_s else "-")
    out_console.print(table)
    if p.unpriced:
        out_console.print(f"not priced by the cost model (counted as 0): {', '.join(p.unpriced)}", markup=False)
    mem = Table(title="Memory at each device's peak (GiB; the terms live then, summing to the total; "
                      "`pfplan memory` shows every phase)")
    for col in ("device", "gpu", "peak in", "transformer", "activations", "kv buffers", "receive", "text enc.",
                "vae", "working", "framework", "total", "capacity", "fits", "utilisation"):
        mem.add_column(col, justify="left" if col in ("device", "gpu", "peak in", "fits") else "right")
    for device, m in result.memory.items():
        cap = p.memory_capacity_bytes[device]
        mem.add_row(device, gpu_of[device], m.phase, *(f"{v / GIB:.2f}" for v in (*m.at_peak().values(), m.total, cap)),
                    "yes" if m.total <= cap else "OOM", f"{100 * result.utilisation[device]:.1f}%")
    out_console.print(mem)
    for line in result.oom:
        out_console.print(f"OOM {line}", markup=False)
    traffic = ", ".join(f"{cls} {b / 1e9:.3f} GB" for cls, b in p.bytes_by_route_class.items()) or "none"
    out_console.print(f"bytes moved by route class: {traffic}", markup=False)


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_cmd(
        model: Optional[str] = typer.Option(None, help="Model preset, preset file or diffusers config."),
        resolution: Optional[int] = typer.Option(None, min=1, help="Square image side in pixels (default: the model's)."),
        height: Optional[int] = typer.Option(None, min=1, help="Image height in pixels (overrides --resolution)."),
        width: Optional[int] = typer.Option(None, min=1, help="Image width in pixels (overrides --resolution)."),
        steps: Optional[int] = typer.Option(None, min=1, help="Diffusion steps (default: the model's)."),
        topology: Optional[str] = typer.Option(None, help="Topology file or shipped name (pcie8)."),
        profile: Optional[str] = typer.Option(None, help="Profile; default: the GPU's analytic roofline."),
        plan_file: Optional[Path] = typer.Option(None, "--plan", help="plan.json to simulate."),
        parallel: Optional[str] = typer.Option(None, help='Degrees, e.g. "pipefusion=8,patches=16,warmup=1".'),
        trace: Optional[Path] = typer.Option(None, help="Write the simulated Chrome trace here."),
        network: str = typer.Option("fair", help="Link contention model: fair (shared bandwidth) or fifo (queue)."),
        links: Optional[str] = typer.Option(None, help="Profile with measured links (pfplan profile links): "
                                                        "their latency/bandwidth per route class replace the topology's."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Predict the latency, memory and traffic of one plan."""
        guard_outputs({"--trace": trace}, {"--plan": plan_file, "--topology": topology, "--model": model, "--profile": profile, "--links": links})
        if network not in NETWORK_MODELS:
            raise InputError(f"unknown model {network!r}; models: {', '.join(NETWORK_MODELS)}", field="--network")
        plan = build_plan(plan_file=plan_file, parallel=parallel, model=model, resolution=resolution,
                          height=height, width=width, steps=steps, topology=topology)
        if plan.topology is None:
            raise InputError("a topology is needed (--topology NAME or the plan's topology field)",
                             field="--topology")
        preset = plan_model(plan, file=str(plan_file) if plan_file else None)
        cluster = load_cluster(plan.topology)
        validate(plan, preset, cluster, file=str(plan_file) if plan_file else "--parallel")
        devices = plan.devices(cluster)
        cost_model = cost_model_for(preset, cluster.gpu_of(devices[0]), profile)
        fits = link_fits_from(links) if links else None
        result = simulate(plan, preset, cluster, cost_model, record_trace=trace is not None, network_model=network,
                          link_fits=fits, dtype_bytes=dtype_bytes_of(cost_model))
        if trace is not None and result.trace is not None:
            result.trace.metadata.command = "pfplan simulate"
            write_trace(trace, result.trace)
        if json_out:
            print_json(result_json(plan, result))
        else:
            print_result(plan, result, cluster.device_gpu)
            out_console.print(cluster.topology.communication.describe(brief=True), markup=False)
            if trace is not None:
                out_console.print(f"trace written to {trace}", markup=False)
