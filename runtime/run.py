"""The library face of ``pfrun``: run a plan, get latents, images, timings and the trace.

:func:`execute` checks the plan (the simulator's rules, then the runtime's own limits),
launches the ranks and assembles what they returned. Nothing is written here; the CLI
writes files only after a whole run succeeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from profiles.catalog.models import ModelPreset
from simulator.runnable import unrunnable_reason
from runtime.errors import UnrunnablePlan
from runtime.launch import launch
from runtime.measure import merge_trace
from runtime.worker import Job
from simulator.plan import Degrees, ParallelPlan, plan_cluster, validate
from simulator.trace import Trace


@dataclass
class RunResult:
    """What one run produced (image index → latent / PNG; image k is made by replica k mod data degree)."""

    latency_s: float
    step_times_s: list[float]
    latents: dict[int, Any] = field(default_factory=dict)
    pngs: dict[int, bytes] = field(default_factory=dict)
    videos: dict[int, Any] = field(default_factory=dict)
    """Decoded clips of a video model, (F, H, W, 3) uint8 arrays (encoded by the CLI)."""
    events: list[list[dict[str, Any]]] = field(default_factory=list)
    cpu_s_per_rank: list[float] = field(default_factory=list)
    """CPU seconds each rank's process used from the start barrier to its end (all its threads)."""
    params_per_rank: list[int] = field(default_factory=list)
    """Transformer parameters each rank holds after dropping other stages' blocks."""

    def trace(self, *, model: str, plan: ParallelPlan, device: str, command: str = "") -> Trace:
        return merge_trace(self.events, model=model, plan=plan.model_dump(mode="json"), device=device,
                           command=command, latency_s=self.latency_s)


def check_runnable(plan: ParallelPlan, preset: ModelPreset, *, file: str | None = None) -> None:
    """The simulator's rules (against the plan's topology, when it names one), then the runtime's limits."""
    validate(plan, preset, plan_cluster(plan, file=file), file=file)
    reason = unrunnable_reason(plan, preset)
    if reason:
        raise UnrunnablePlan(reason, file=file)


def job_for(plan: ParallelPlan, preset: ModelPreset, **options: Any) -> Job:
    return Job(plan_json=plan.model_dump_json(), preset_json=preset.model_dump_json(), **options)


def execute(job: Job, *, in_process: bool = False, fresh_process: bool = False) -> RunResult:
    """Launch every rank of ``job`` (or join torchrun); rank 0 of torchrun and the launcher get the result.

    ``in_process``: a one-rank job runs in this process even under torchrun (the serial reference).
    ``fresh_process``: a one-rank job runs in a new rank process, as ``pfrun``'s own (timing).
    """
    import torch

    payloads = launch(job, job.plan.world_size, in_process=in_process, fresh_process=fresh_process)
    if not payloads:
        return RunResult(latency_s=math.nan, step_times_s=[])
    out = RunResult(latency_s=max(p["end_s"] for p in payloads), step_times_s=[],
                    events=[p["events"] for p in payloads], params_per_rank=[p["params"] for p in payloads],
                    cpu_s_per_rank=[p["cpu_s"] for p in payloads])
    for p in payloads:
        for image, made in sorted(p.get("images", {}).items()):  # image k: replica k mod data degree
            out.latents[image] = torch.from_numpy(made["latent"])
            if made["png"] is not None:
                out.pngs[image] = made["png"]
            if made.get("video") is not None:
                out.videos[image] = made["video"]
            if image == 0:
                ends = made["step_end_s"]
                out.step_times_s = [b - a for a, b in zip([0.0] + ends[:-1], ends)]
    return out


def serial_plan(plan: ParallelPlan) -> ParallelPlan:
    """The same generation on one rank, no patches: the reference a parallel run is compared with."""
    return plan.model_copy(update={"degrees": Degrees(), "patches": 1, "warmup_steps": 0, "stage_split": None,
                                   "placement": [], "prediction": None})


def compare(latent: Any, reference: Any, png: bytes | None, reference_png: bytes | None) -> dict[str, float | None]:
    """Max abs difference of the latents and PSNR (dB) of the decoded images (inf when identical)."""
    import numpy as np

    out: dict[str, float | None] = {"max_abs_diff": float((latent - reference).abs().max()), "psnr_db": None}
    if png is not None and reference_png is not None:
        import io

        from PIL import Image

        a = np.asarray(Image.open(io.BytesIO(png)), dtype=np.float64) / 255
        b = np.asarray(Image.open(io.BytesIO(reference_png)), dtype=np.float64) / 255
        mse = float(((a - b) ** 2).mean())
        out["psnr_db"] = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
    return out
