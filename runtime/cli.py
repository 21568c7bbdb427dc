"""The ``pfrun`` command: execute a plan.json with torch.distributed.

The executors arrive with the runtime issue; until then ``pfrun`` checks the plan and
refuses to run it with one clear line, rather than pretending.
"""

from __future__ import annotations

from pathlib import Path

import typer

from planner.cli_app import entry_point
from profiles.loading import load_model_file
from profiles.models import load_model
from profiles.topology_graph import load_cluster
from runtime.errors import UnrunnablePlan
from simulator.plan import ParallelPlan, validate

app = typer.Typer(name="pfrun", help="Run a parallel plan (plan.json) with torch.distributed. "
                  "Add --debug to see tracebacks.", add_completion=False, pretty_exceptions_enable=False)


@app.command()
def run(plan_file: Path = typer.Option(..., "--plan", help="plan.json written by pfplan search.")) -> None:
    """Execute the plan."""
    plan = load_model_file(ParallelPlan, plan_file)
    model = load_model(plan.model)
    validate(plan, model, load_cluster(plan.topology) if plan.topology else None, file=str(plan_file))
    raise UnrunnablePlan("no executor is implemented yet", file=str(plan_file))


main = entry_point(app, "pfrun")

if __name__ == "__main__":
    main()
