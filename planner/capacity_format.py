"""The file ``pfplan capacity --results capacity.json`` writes and ``pfplan report --capacity`` reads."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FleetRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(description="e.g. 3×pipefusion4 + 2×serial.")
    mix: list[tuple[str, int, int]] = Field(description="(plan label, devices per replica, replicas).")
    gpus: int
    boxes: int
    rate: float = Field(description="Offered requests per second.")
    p50_s: float
    p95_s: float
    p99_s: float
    slo_attainment: float | None = None
    utilisation: float
    meets_slo: bool
    usd_per_hour: float | None = None
    usd_per_1000_images: float | None = None
    price_source: str | None = None
    batching: list[str] = Field(default_factory=list)


class CurvePoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: float
    p50_s: float
    p99_s: float
    utilisation: float
    slo_attainment: float | None = None


class RateCurve(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str
    gpus: int
    points: list[CurvePoint]


class CapacityReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    kind: Literal["capacity"] = "capacity"
    model: str
    topology: str
    resolution: int
    steps: int
    rate: float
    slo_s: float | None
    percentile: float
    arrivals: str
    routing: str
    requests: int
    options: list[FleetRecord]
    curves: list[RateCurve] = Field(default_factory=list)
