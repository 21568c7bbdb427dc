"""Loading one planning job (topology, model, cost model) and searching it with a progress bar.

Shared by ``pfplan search`` and ``pfplan capacity`` so both read their inputs the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from profiles.cli_support import err_console
from planner.errors import PlannerError
from planner.search import SearchResult, SearchSettings, search
from profiles.costs.cost_model import CostModel
from profiles.costs.selection import cost_model_for
from profiles.catalog.models import ModelPreset, load_model
from profiles.topology.graph import ClusterGraph, load_cluster


def sha256_of(path: str | Path | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_job(topology: str, model_name: str, profile: Optional[str],
             frames: Optional[int] = None) -> tuple[ClusterGraph, ModelPreset, CostModel]:
    """The cluster, the model (generating ``frames``: a video's decode is priced for that clip) and its cost model."""
    cluster = load_cluster(topology)
    model = load_model(model_name).with_frames(frames)
    kinds = sorted(set(cluster.device_gpu.values()))
    if len(kinds) > 1:
        raise PlannerError(f"mixed device kinds ({', '.join(kinds)}) are not planned yet", field="--topology")
    return cluster, model, cost_model_for(model, kinds[0], profile)


def resolution_of(model: ModelPreset, resolution: Optional[int]) -> int:
    value = resolution if resolution is not None else model.default_resolution
    model.token_grid(value, value)  # one-line error for a resolution that is not whole tokens
    return value


def run_search(cluster: ClusterGraph, model: ModelPreset, cost_model: CostModel, *, resolution: int,
               steps: int, settings: SearchSettings, topology: str) -> SearchResult:
    """Search with a transient progress bar on stderr."""
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=not err_console.is_terminal) as bar:
        tasks: dict[str, object] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)  # type: ignore[arg-type]
        return search(model, cluster, cost_model, height_px=resolution, width_px=resolution, steps=steps,
                      settings=settings, progress=progress, topology_name=topology)


