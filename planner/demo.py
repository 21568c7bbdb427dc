"""``make demo``: the main job end to end on this machine's embedded default.

Today it walks through what is built: the model catalog, the ``cpu2`` topology (this
machine's two CPU ranks) and a PipeFusion plan for the tiny PixArt preset checked
against both. Each step runs the real ``pfplan`` command in-process.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from planner.cli import app
from planner.cli_app import run_app
from profiles.loading import write_model_json
from simulator.plan import Degrees, ParallelPlan

STEPS: list[tuple[str, list[str]]] = [
    ("model catalog", ["models"]),
    ("this machine as a topology", ["topology", "show", "cpu2"]),
]


def main() -> int:
    for title, args in STEPS:
        print(f"\n== {title}: pfplan {' '.join(args)}", flush=True)
        code = run_app(app, "pfplan", args)
        if code:
            return code
    with tempfile.TemporaryDirectory() as tmp:
        plan_file = Path(tmp) / "plan.json"
        plan = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=4,
                            degrees=Degrees(pipefusion=2), patches=4, warmup_steps=1, topology="cpu2")
        write_model_json(plan_file, plan)
        print(f"\n== a PipeFusion plan: pfplan plan validate {plan_file.name}", flush=True)
        return run_app(app, "pfplan", ["plan", "validate", str(plan_file)])


if __name__ == "__main__":
    sys.exit(main())
