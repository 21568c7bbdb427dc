"""Small helpers shared by the runtime tests: tiny plans and runs through the library API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from profiles.catalog.models import load_model
from runtime.run import RunResult, execute, job_for
from simulator.plan import ParallelPlan

PX = 128
"""Tiny presets at 128 px: a 8×8 token grid, a few ms per forward."""


def plan(model: str, *, steps: int = 4, px: int = PX, **fields: Any) -> ParallelPlan:
    return ParallelPlan(model=model, height_px=px, width_px=px, steps=steps, **fields)


CFG_SCALE = 4.5
"""The CFG scale these tests run CFG models at: pfrun's fixed scale before it took each pipeline's
default (DiT's 4.0), at which the tolerances of the parallel-vs-serial tests were measured."""


def run(p: ParallelPlan, **options: Any) -> RunResult:
    options.setdefault("decode", False)
    options.setdefault("timeout_s", 60)
    preset = load_model(p.model)
    if preset.uses_cfg:
        options.setdefault("guidance_scale", CFG_SCALE)
    return execute(job_for(p, preset, **options))


def max_diff(a: RunResult, b: RunResult, replica: int = 0) -> float:
    return float((a.latents[replica] - b.latents[replica]).abs().max())


def write_plan(path: Path, p: ParallelPlan) -> Path:
    path.write_text(json.dumps(p.model_dump(mode="json", exclude_none=True)))
    return path
