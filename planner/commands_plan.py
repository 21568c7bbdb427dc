"""``pfplan plan``: write a plan by hand (``new``), translate one to and from xDiT, and check a plan file against its model and topology.

``plan new`` is the search without the search: the user names the degrees with the same
``--parallel`` spec ``pfplan simulate`` takes, and the plan gets what the search would
give that shape (a cost-balanced stage split, the greedy placement, the simulator's
prediction), so ``pfrun --plan`` and ``pfplan simulate --plan`` read it like a searched one.
``plan import --from xdit`` is the same with the degrees read off an xDiT command line, and
``plan export --to xdit`` prints that command line for a plan (:mod:`planner.xdit`
translates); ``new`` and ``import`` share :func:`write_checked_plan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from profiles.cli_support import out_console, print_json
from profiles.loading import write_model_json
from profiles.errors import InputError, PfplanError
from profiles.catalog.models import load_model
from profiles.output_guard import guard_outputs
from simulator.plan import ParallelPlan, plan_cluster, validate
from simulator.plan_files import load_plan, paths_relative_to
from simulator.runnable import unrunnable_reason


def register(app: typer.Typer) -> None:
    plan_app = typer.Typer(help="Parallel plans (plan.json).", no_args_is_help=True)

    @plan_app.command("validate")
    def plan_validate(plan_file: Path = typer.Argument(..., help="plan.json"),
                      topology: Optional[str] = typer.Option(None, help="Topology (default: the plan's)."),
                      json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Check every plan rule; exit 2 with all violations in one line if any fail."""
        plan = load_plan(plan_file)
        try:
            model = load_model(plan.model)
        except PfplanError as exc:
            raise InputError(exc.message, file=exc.file or str(plan_file), field=exc.field or "model") from None
        cluster = plan_cluster(plan, file=str(plan_file), override=topology)
        validate(plan, model, cluster, file=str(plan_file))
        model = model.with_frames(plan.frames)  # valid: validate checked the plan's frames
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
        from profiles.catalog.models import load_model as load_preset
        from simulator.plan import plan_from_spec

        preset = load_preset(model)
        size = resolution if resolution is not None else preset.default_resolution
        plan = plan_from_spec(model, parallel, height_px=height or size, width_px=width or size,
                              steps=steps if steps is not None else preset.default_steps, topology=topology)
        command = (f"pfplan plan new --model {model} --topology {topology} --parallel {parallel!r}"
                   f" --height {plan.height_px} --width {plan.width_px} --steps {plan.steps}"
                   f"{f' --profile {profile}' if profile else ''} -o {output}")
        write_checked_plan(plan, model=model, topology=topology, profile=profile, output=output, command=command,
                           field="--parallel", notes=["written by hand with pfplan plan new"])

    @plan_app.command("export")
    def plan_export(plan_file: Path = typer.Argument(..., help="plan.json"),
                    to: str = typer.Option(..., "--to", help="Engine: xdit.")) -> None:
        """Print the command line that runs the plan on another engine (xDiT: torchrun + its example script)."""
        from planner.xdit import to_xdit
        from profiles.cli_support import err_console

        check_engine(to, "--to")
        plan = load_plan(plan_file)
        try:
            model = load_model(plan.model)
        except PfplanError as exc:
            raise InputError(exc.message, file=exc.file or str(plan_file), field=exc.field or "model") from None
        validate(plan, model, file=str(plan_file))
        try:
            command = to_xdit(plan, model)
        except InputError as exc:
            raise InputError(exc.message, file=str(plan_file), field=exc.field) from None
        print(command.line())
        for note in command.notes:
            err_console.print(f"note: {note}", markup=False, soft_wrap=True)

    @plan_app.command("import", context_settings={"ignore_unknown_options": True})  # ARGS may start with --
    def plan_import(args: str = typer.Argument(..., help='The xDiT command line or its flags, quoted.'),
                    source: str = typer.Option(..., "--from", help="Engine: xdit."),
                    model: str = typer.Option(..., help="Preset name, preset file or local diffusers folder."),
                    topology: str = typer.Option(..., help="Topology name or file the plan runs on."),
                    profile: Optional[str] = typer.Option(None, help="Profile for the split and the prediction "
                                                          "(default: the topology GPU's analytic roofline)."),
                    output: Path = typer.Option(..., "-o", "--output", help="plan.json to write.")) -> None:
        """Write the plan an xDiT command line runs, checked by the plan rules, with its prediction."""
        from pydantic import ValidationError

        from planner.xdit import from_xdit
        from profiles.catalog.models import load_model as load_preset

        check_engine(source, "--from")
        preset = load_preset(model)
        fields, notes = from_xdit(args, preset)
        try:
            plan = ParallelPlan(model=model, topology=topology, **fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InputError(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}", field="--from xdit") from None
        command = (f"pfplan plan import --from xdit {args!r} --model {model} --topology {topology}"
                   f"{f' --profile {profile}' if profile else ''} -o {output}")
        write_checked_plan(plan, model=model, topology=topology, profile=profile, output=output, command=command,
                           field="--from xdit", notes=["imported from an xDiT command line", *notes])

    app.add_typer(plan_app, name="plan")


ENGINES = ("xdit",)
"""Engines ``plan export`` and ``plan import`` translate to and from."""


def check_engine(name: str, option: str) -> None:
    if name.lower() not in ENGINES:
        raise InputError(f"unknown engine {name!r}; engines: {', '.join(ENGINES)}", field=option)


def write_checked_plan(plan: ParallelPlan, *, model: str, topology: str, profile: Optional[str], output: Path,
                       command: str, field: str, notes: list[str]) -> None:
    """Check ``plan`` by the rules, give it the search's split (unless it has one) and placement and the
    simulator's prediction, and write it: what ``plan new`` and ``plan import`` share."""
    from planner.job import load_job, sha256_of
    from planner.search import prepare
    from planner.simulated import simulate_prediction
    from profiles.costs.selection import dtype_bytes_of
    from simulator.plan import Provenance

    guard_outputs({"--output": output}, {"--topology": topology, "--profile": profile, "--model": model})
    cluster, preset, cost_model = load_job(topology, model, profile)
    validate(plan, preset, cluster, file=field)
    given_split = plan.stage_split
    plan, _ = prepare(plan, preset, cluster, cost_model)[0]
    if given_split is not None:
        plan = plan.model_copy(update={"stage_split": given_split})
    prediction, why = simulate_prediction(plan, preset, cluster, cost_model, dtype_bytes_of(cost_model))
    if prediction is None:
        raise InputError(f"{plan.degrees.label()} {why}", field=field)
    reason = unrunnable_reason(plan, preset)
    plan = plan.model_copy(update={
        "prediction": prediction,
        "provenance": Provenance(command=command, topology=topology, topology_sha256=sha256_of(cluster.file),
                                 profile=profile, profile_sha256=sha256_of(profile)),
        "notes": notes + ([f"pfrun cannot run it yet: {reason}"] if reason else [])})
    write_model_json(output, paths_relative_to(plan, output))
    out_console.print(f"wrote {output}: {plan.degrees.label()} on {cluster.topology.name}, "
                      f"predicted {prediction.latency_s:.3g} s"
                      f"{'' if reason is None else f'; pfrun cannot run it yet: {reason}'}", markup=False,
                      soft_wrap=True)
