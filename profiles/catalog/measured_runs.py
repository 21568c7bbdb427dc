"""Measured end-to-end runs of whole plans on one box: the evidence ``pfplan topology calibrate`` fits to.

A file holds what someone timed (or what a paper reports) for one model on one box: each
run is a plan in ``pfplan simulate --parallel`` syntax, its image size and steps, and the
seconds one generation took. ``source`` is required, so a calibrated topology can always
say where its numbers come from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from profiles.formats import FormatModel
from pydantic import ConfigDict, Field

from profiles.loading import load_model_file, resolve_shipped

MEASUREMENTS_DIR = Path(__file__).parents[1] / "data" / "measurements"


class MeasuredRun(FormatModel):
    """One timed generation."""

    model_config = ConfigDict(extra="forbid")

    parallel: str = Field(min_length=1, description='Plan degrees as `pfplan simulate --parallel` takes them: '
                                                    '"ulysses=4", "pipefusion=4,patches=8,warmup=1", "serial=1".')
    resolution: int = Field(gt=0, description="Square image side, pixels.")
    steps: int = Field(gt=0, description="Diffusion steps.")
    latency_s: float = Field(gt=0, allow_inf_nan=False, description="Measured seconds of one generation.")
    label: str = Field("", description="A name for tables (default: the parallel spec).")

    def name(self) -> str:
        return self.label or self.parallel


class MeasuredRuns(FormatModel):
    """Runs of one model on one box."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    model: str = Field(description="Model preset (pfplan models) the runs used.")
    box: str = Field("", description="The machine they ran on, in words.")
    source: str = Field(pattern=r"\S", description="Where the figures come from: a command and host, or a publication.")
    runs: list[MeasuredRun] = Field(min_length=1)


def load_measured_runs(name_or_path: str | Path) -> tuple[MeasuredRuns, Path]:
    """A measurements file, or a shipped one by name (profiles/data/measurements)."""
    path = resolve_shipped(str(name_or_path), MEASUREMENTS_DIR, "measurements file")
    return load_model_file(MeasuredRuns, path), path
