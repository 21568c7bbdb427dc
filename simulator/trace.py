"""The trace format: Chrome trace-event JSON, one format for simulated and measured runs.

A trace opens in Perfetto and chrome://tracing. Each rank is one track (``pid`` 0, ``tid``
= rank, named by a metadata event); each unit of work is a complete event (``ph: "X"``)
with start ``ts`` and duration ``dur`` in microseconds, a category saying what kind of
work it is, and args naming the step, patch, stage and layer. ``pfplan validate`` compares
two traces by these keys, so the simulator and the runtime must use the same ones.

Categories (``cat``): ``compute`` (a stage's blocks on one patch or the whole image),
``embed``, ``final``, ``scheduler``, ``vae``, ``send``, ``recv``, ``collective``, ``wait``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from profiles.formats import FormatModel
from pydantic import ConfigDict, Field

from profiles.loading import load_model_file, write_atomic

CATEGORIES = ("compute", "embed", "final", "scheduler", "vae", "overhead", "send", "recv", "collective", "wait")


class TraceArgs(FormatModel):
    """Where in the schedule an event sits; None where it does not apply."""

    model_config = ConfigDict(extra="allow")

    step: int | None = None
    patch: int | None = Field(None, description="PipeFusion patch index; None for the whole image.")
    stage: int | None = Field(None, description="Pipeline stage index.")
    layer: int | None = Field(None, description="First block index of the work, if one layer.")
    layers: str | None = Field(None, description="Block range, e.g. '0-13'.")
    bytes: int | None = Field(None, description="Payload of a transfer or collective.")
    peer: int | None = Field(None, description="The other rank of a point-to-point transfer.")
    route_class: str | None = None
    warmup: bool | None = None


class TraceEvent(FormatModel):
    """One Chrome trace event (complete ``X`` events for work, ``M`` for track names)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    ph: Literal["X", "M", "i"] = "X"
    cat: str = "compute"
    ts: float = Field(0.0, description="Start, µs from the start of the run.")
    dur: float = Field(0.0, ge=0, description="Duration, µs.")
    pid: int = 0
    tid: int = Field(0, description="The rank.")
    args: dict[str, Any] = Field(default_factory=dict)


class TraceMeta(FormatModel):
    """What produced the trace."""

    model_config = ConfigDict(extra="allow")

    schema_version: Literal[1] = 1
    source: Literal["simulated", "measured"]
    model: str = ""
    plan: dict[str, Any] = Field(default_factory=dict, description="The plan (as JSON) the trace ran.")
    device: str = Field("", description="Device kind or cost model the times come from.")
    command: str = ""
    latency_s: float | None = Field(None, description="End-to-end latency the producer reports.")


class Trace(FormatModel):
    """A whole trace file."""

    model_config = ConfigDict(extra="forbid")

    traceEvents: list[TraceEvent]  # noqa: N815 - the Chrome trace field name
    displayTimeUnit: Literal["ms", "ns"] = "ms"  # noqa: N815
    metadata: TraceMeta

    def work(self) -> list[TraceEvent]:
        return [e for e in self.traceEvents if e.ph == "X"]

    def ranks(self) -> list[int]:
        return sorted({e.tid for e in self.work()})


def track_names(ranks: int, label: str = "rank") -> list[TraceEvent]:
    """Metadata events naming each rank's track."""
    return [TraceEvent(name="thread_name", ph="M", tid=r, args={"name": f"{label} {r}"}) for r in range(ranks)]


def write_trace(path: Path | str, trace: Trace) -> None:
    write_atomic(path, trace.model_dump_json(exclude_none=True) + "\n")


def load_trace(path: Path | str) -> Trace:
    return load_model_file(Trace, path)
