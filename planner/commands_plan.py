"""``pfplan plan``: check a plan file against its model and topology."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from profiles.cli_support import out_console, print_json
from profiles.errors import InputError, PfplanError
from profiles.loading import load_model_file
from profiles.models import load_model
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

    app.add_typer(plan_app, name="plan")
