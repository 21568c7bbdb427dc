"""``pfplan plan``: write a plan by hand (``new``) and check a plan file against its model and topology.

``plan new`` is the search without the search: the user names the degrees with the same
``--parallel`` spec ``pfplan simulate`` takes, and the plan gets what the search would
give that shape (a cost-balanced stage split, the greedy placement, the simulator's
prediction), so ``pfrun --plan`` and ``pfplan simulate --plan`` read it like a searched one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from profiles.cli_support import out_console, print_json
from profiles.loading import check_writable, write_model_json
from profiles.errors import InputError, PfplanError
from profiles.loading import load_model_file
from profiles.catalog.models import load_model
from simulator.plan import ParallelPlan, plan_cluster, validate
from simulator.runnable import unrunnable_reason


def register(app: typer.Typer) -> None:
    plan_app = typer.Typer(help="Parallel plans (plan.json).", no_args_is_help=True)

    @plan_app.command("validate")
    def plan_validate(plan_file: Path = typer.Argument(..., help="plan.json"),
                      topology: Optional[str] = typer.Option(None, help="Topology (default: the plan's)."),
                      json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Check every plan rule; exit 2 with all violations in one line if any fail."""
        plan = load_model_file(ParallelPlan, plan_file)
        try:
            model = load_model(plan.model)
        except PfplanError as exc:
            raise InputError(exc.message, file=exc.file or str(plan_file), field=exc.field or "model") from None
        cluster = plan_cluster(plan, file=str(plan_file), override=topology)
        validate(plan, model, cluster, file=str(plan_file))
        reason = unrunnable_reason(plan, model)
        if json_out:
            print_json({"valid": True, "world_size": plan.world_size, "degrees": plan.degrees.label(),
                        "runnable": reason is None, "not_runnable_reason": reason})
        else:
            out_console.print(f"{plan_file}: valid ({plan.degrees.label()}, {plan.world_size} ranks, "
                              f"{model.name} {plan.height_px}×{plan.width_px}, {plan.steps} steps); "
                              f"{'pfrun runs it' if reason is None else f'pfrun cannot run it yet: {reason}'}",
                              markup=False)

    @plan_app.command("new")
    def plan_new(model: str = typer.Option(..., help="Preset name, preset file or local diffusers folder."),
                 topology: str = typer.Option(..., help="Topology name or file the plan runs on."),
                 parallel: str = typer.Option(..., help='Degrees and knobs, e.g. "pipefusion=4,patches=8,cfg=2".'),
                 resolution: Optional[int] = typer.Option(None, help="Square size in px (default: the model's)."),
                 height: Optional[int] = typer.Option(None, help="Height in px (overrides --resolution)."),
                 width: Optional[int] = typer.Option(None, help="Width in px (overrides --resolution)."),
                 steps: Optional[int] = typer.Option(None, help="Diffusion steps (default: the model's)."),
                 profile: Optional[str] = typer.Option(None, help="Profile for the split and the prediction "
                                                       "(default: the topology GPU's analytic roofline)."),
                 output: Path = typer.Option(..., "-o", "--output", help="plan.json to write.")) -> None:
        """Write the plan a --parallel spec describes, checked by the plan rules, with its prediction."""
        from planner.job import load_job, sha256_of
        from planner.search import prepare, simulate_prediction
        from profiles.costs.selection import dtype_bytes_of
        from simulator.plan import Provenance, plan_from_spec

        check_writable(output)
        inputs = [Path(p) for p in (topology, profile, model) if p and Path(p).exists()]
        if any(output.resolve() == p.resolve() for p in inputs):
            raise InputError("is also an input of this command; write the plan elsewhere", file=str(output))
        cluster, preset, cost_model = load_job(topology, model, profile)
        size = resolution if resolution is not None else preset.default_resolution
        plan = plan_from_spec(model, parallel, height_px=height or size, width_px=width or size,
                              steps=steps if steps is not None else preset.default_steps, topology=topology)
        validate(plan, preset, cluster, file="--parallel")
        plan, _ = prepare(plan, preset, cluster, cost_model)[0]
        prediction, why = simulate_prediction(plan, preset, cluster, cost_model, dtype_bytes_of(cost_model))
        if prediction is None:
            raise InputError(f"{plan.degrees.label()} {why}", field="--parallel")
        reason = unrunnable_reason(plan, preset)
        command = (f"pfplan plan new --model {model} --topology {topology} --parallel {parallel!r}"
                   f" --height {plan.height_px} --width {plan.width_px} --steps {plan.steps}"
                   f"{f' --profile {profile}' if profile else ''} -o {output}")
        plan = plan.model_copy(update={
            "prediction": prediction,
            "provenance": Provenance(command=command, topology=topology, topology_sha256=sha256_of(cluster.file),
                                     profile=profile, profile_sha256=sha256_of(profile)),
            "notes": ["written by hand with pfplan plan new"] + ([f"pfrun cannot run it yet: {reason}"] if reason else [])})
        write_model_json(output, plan)
        out_console.print(f"wrote {output}: {plan.degrees.label()} on {cluster.topology.name}, "
                          f"predicted {prediction.latency_s:.3g} s"
                          f"{'' if reason is None else f'; pfrun cannot run it yet: {reason}'}", markup=False,
                          soft_wrap=True)

    app.add_typer(plan_app, name="plan")
