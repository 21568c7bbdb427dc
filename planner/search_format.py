"""The file ``pfplan search --results search.json`` writes and ``pfplan report`` reads.

One record per plan the search looked at closely (simulated or estimated) and one per
plan it rejected, each with the numbers the table shows and the reason it lost, so a
report can be drawn later without searching again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from profiles.formats import FormatModel
from pydantic import BaseModel, ConfigDict, Field

from simulator.plan import ParallelPlan

if TYPE_CHECKING:
    from planner.search import Candidate, SearchResult


class CandidateRecord(FormatModel):
    """A plan that fits, with what was predicted for it."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(ge=1, description="1 = the chosen plan.")
    label: str = Field(description="Degrees label, e.g. cfg2×pipefusion4.")
    devices: int = Field(ge=1)
    placement_name: str = Field(description="Which placement alternative won for this shape.")
    latency_s: float = Field(ge=0, description="Simulated latency when simulated; a lower bound when ``stopped``; "
                             "else the fast estimate.")
    simulated: bool = Field(description="Simulated to the end.")
    stopped: bool = Field(False, description="Its simulation stopped once its clock passed latency_s, since it could "
                          "no longer enter the exactly ranked top plans: the latency is at least latency_s.")
    estimate_s: float = Field(ge=0, description="The fast analytic estimate used for pruning.")
    throughput_images_per_s: float = Field(ge=0)
    speedup_over_one_gpu: float | None = None
    peak_memory_bytes: int = Field(ge=0, description="Largest per-device footprint.")
    capacity_bytes: int = Field(ge=0, description="Memory of that device.")
    traffic_bytes_by_route_class: dict[str, int] = Field(default_factory=dict)
    breakdown_s: dict[str, float] = Field(default_factory=dict, description="Simulated time breakdown (empty when "
                                          "estimated only).")
    runnable_reason: str | None = Field(None, description="Why pfrun cannot run it yet (None: it can).")
    lost_because: str = Field("", description="Why it ranks below the chosen plan.")
    plan: ParallelPlan


class RejectedRecord(FormatModel):
    """A plan shape dropped before ranking."""

    model_config = ConfigDict(extra="forbid")

    label: str
    devices: int
    patches: int
    reason: str


class SearchReport(FormatModel):
    """Everything one search found."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    model: str
    height_px: int
    width_px: int
    steps: int
    topology: str
    objective: Literal["latency", "throughput"]
    cost_model: str
    baseline_latency_s: float | None = Field(None, description="Serial plan on one device (simulated).")
    counts: dict[str, int] = Field(default_factory=dict, description="Shapes enumerated, pruned, simulated.")
    chosen_rank: int | None = Field(None, ge=1, description="Rank of the plan written (-o); None: rank 1.")
    topology_source: str | None = Field(None, description="The --topology argument (name or path), to re-simulate.")
    profile: str | None = Field(None, description="The --profile argument, to re-simulate.")
    candidates: list[CandidateRecord] = Field(min_length=1)
    rejected: list[RejectedRecord] = Field(default_factory=list)

    @property
    def chosen(self) -> CandidateRecord:
        """The plan written: ``chosen_rank`` (rank 1 in files from before the field)."""
        rank = self.chosen_rank or 1
        return next((r for r in self.candidates if r.rank == rank), self.candidates[0])


class SweepReport(BaseModel):
    """``pfplan search --resolutions A,B,C --results sweep.json``: one search per resolution."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    kind: Literal["sweep"] = "sweep"
    searches: list[SearchReport]


def why_text(rec: CandidateRecord, report: SearchReport) -> str:
    """The table's last column: "chosen" only for the plan written, and why #1 was not written if so."""
    chosen = report.chosen
    if rec.rank == chosen.rank:
        return "chosen (the plan written)"
    if rec.rank == 1:
        reason = rec.runnable_reason or "not written"
        return f"fastest, not written: {reason}"
    return rec.lost_because


def latency_text(rec: CandidateRecord, unit: str = "") -> str:
    """The latency as tables show it: "41.4", "≥ 52.1" (stopped: a lower bound) or "60.2 est" (``unit`` after the number)."""
    if rec.stopped:
        return f"≥ {rec.latency_s:.3g}{unit}"
    return f"{rec.latency_s:.3g}{unit}" + ("" if rec.simulated else " est")


def how_priced(rec: CandidateRecord) -> str:
    return "simulated" if rec.simulated else "stopped: latency at least this" if rec.stopped else "estimate"


def candidate_record(rank: int, cand: "Candidate", baseline_latency_s: float | None) -> CandidateRecord:
    prediction = cand.prediction
    return CandidateRecord(
        rank=rank, label=cand.plan.degrees.label(), devices=cand.plan.world_size,
        placement_name=cand.placement_name, latency_s=cand.latency_s, simulated=cand.simulated, stopped=cand.stopped,
        estimate_s=cand.estimate_s, throughput_images_per_s=cand.throughput_images_per_s,
        speedup_over_one_gpu=(baseline_latency_s / cand.latency_s
                              if baseline_latency_s and cand.latency_s > 0 else None),
        peak_memory_bytes=cand.peak_memory_bytes, capacity_bytes=cand.capacity_bytes,
        traffic_bytes_by_route_class=dict(prediction.bytes_by_route_class) if prediction else {},
        breakdown_s=dict(prediction.breakdown_s) if prediction else {},
        runnable_reason=cand.runnable_reason, lost_because=cand.lost_because, plan=cand.plan)


def search_report(result: "SearchResult", *, model: str, height_px: int, width_px: int, steps: int,
                  topology: str, objective: str, cost_model: str, max_rejected: int = 200) -> SearchReport:
    """The whole result as a file; rejected plans are capped at ``max_rejected`` (counts keep the total)."""
    return SearchReport(
        model=model, height_px=height_px, width_px=width_px, steps=steps, topology=topology,
        objective=objective, cost_model=cost_model, baseline_latency_s=result.baseline_latency_s,
        counts=result.counts,
        candidates=[candidate_record(i + 1, c, result.baseline_latency_s) for i, c in enumerate(result.ranked)],
        rejected=[RejectedRecord(label=r.plan.degrees.label(), devices=r.plan.world_size,
                                 patches=r.plan.patches, reason=r.reason)
                  for r in result.rejected[:max_rejected]])
