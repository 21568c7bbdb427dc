"""JSON Schemas of the file formats, exported to ``docs/schemas/`` (``make schemas``).

A test regenerates them in memory and fails when the committed copies are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from planner.capacity_format import CapacityReport
from planner.prices import PriceTable
from planner.search_format import SearchReport, SweepReport
from planner.trace_compare import TraceComparison
from profiles.catalog.gpus import GpuCatalog
from profiles.catalog.measured_runs import MeasuredRuns
from profiles.catalog.models import ModelPreset
from profiles.costs.profile_format import Profile
from profiles.topology.format import Topology
from simulator.plan import ParallelPlan
from simulator.trace import Trace


def formats() -> dict[str, type[BaseModel]]:
    """File name stem → pydantic model of every documented format."""
    return {"topology": Topology, "plan": ParallelPlan, "model-preset": ModelPreset, "gpu-catalog": GpuCatalog,
            "trace": Trace, "profile": Profile, "search-results": SearchReport,
            "trace-comparison": TraceComparison, "measured-runs": MeasuredRuns,
            "search-sweep": SweepReport, "capacity-results": CapacityReport, "prices": PriceTable}


def render(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"


def export(directory: Path) -> list[Path]:
    from profiles.loading import write_atomic

    written = []
    for stem, model in formats().items():
        path = directory / f"{stem}.schema.json"
        write_atomic(path, render(model))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in export(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")):
        print(f"wrote {path}")
