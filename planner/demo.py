"""``make demo``: the main job end to end on this machine.

Search the ``cpu2`` topology (this machine's two CPU ranks) for the tiny PixArt preset,
restricted to plans ``pfrun`` runs, write ``plan.json``, run it with ``pfrun`` and print
the predicted latency beside the measured one. Each step runs the real command in-process.
The prediction uses the cost model the search used (the analytic CPU roofline unless a
profile is given with ``--profile``), so a large gap here is what calibration is for.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

from planner.cli import app
from profiles.cli_support import run_app
from simulator.plan import ParallelPlan

MODEL, TOPOLOGY, STEPS = "pixart-tiny", "cpu2", "4"


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    print(f"\n== this machine as a topology: pfplan topology show {TOPOLOGY}", flush=True)
    if code := run_app(app, "pfplan", ["topology", "show", TOPOLOGY]):
        return code
    with tempfile.TemporaryDirectory() as tmp:
        plan_file = Path(tmp) / "plan.json"
        search = ["search", "--topology", TOPOLOGY, "--model", MODEL, "--steps", STEPS, "--runnable-only",
                  "--top", "5", "-o", str(plan_file), *extra]
        print(f"\n== choose the plan: pfplan {' '.join(search)}", flush=True)
        if code := run_app(app, "pfplan", search):
            return code
        plan = ParallelPlan.model_validate_json(plan_file.read_text())
        print(f"\n== run it: pfrun --plan {plan_file.name}", flush=True)
        from runtime.cli import app as pfrun_app

        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            code = run_app(pfrun_app, "pfrun", ["--plan", str(plan_file), "--json"])
        if code:
            return code
        measured = json.loads(captured.getvalue())["latency_s"]
        predicted = plan.prediction.latency_s if plan.prediction else float("nan")
        print(f"\n{plan.degrees.label()} on {TOPOLOGY}: predicted {predicted:.3g} s "
              f"({plan.prediction.cost_model if plan.prediction else '-'}), measured {measured:.3g} s, "
              f"measured/predicted {measured / predicted:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
