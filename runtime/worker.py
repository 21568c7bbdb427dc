"""One rank of a run: load the model, build its inputs, run its strategies' loop, decode the image.

A :class:`Job` is everything a rank needs, as plain picklable data, so the same function
runs in a forked child, a spawned child (CUDA) or a torchrun process. The returned
payload (trace events, final latent, PNG bytes, timings) goes to the launcher, which
writes files only when every rank succeeded.
"""

from __future__ import annotations

import io
import os
import signal
import time
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from profiles.catalog.models import ModelPreset
from runtime.dist_context import DistContext
from runtime.measure import Recorder
from runtime.model_inputs import initial_latent, make_conditioning
from runtime.model_loading import load_model_parts
from runtime.staged_model import StagedModel
from runtime.strategies import for_plan
from runtime.strategies.base import ModelView, RankInputs, RankPlace, Recording, StageSetup
from simulator.plan import ParallelPlan

WEIGHT_SEED = 0
"""Random weights of a preset are always built from this seed; ``--seed`` seeds the image."""


@dataclass(frozen=True)
class Job:
    """What every rank of one run needs (picklable for the spawn start method)."""

    plan_json: str
    preset_json: str
    model_path: str | None = None
    seed: int = 0
    prompts: tuple[str, ...] = ()
    """Prompt text per data-parallel replica (replica i uses prompts[i % len]); empty: no text."""
    prompt_embeds: tuple[str, ...] = ()
    """``--prompt-embeds`` files, per replica like ``prompts``; they take precedence."""
    timeout_s: float = 60.0
    threads: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    """Weights, activations and latents: float32, bfloat16 or float16."""
    decode: bool = True
    fault: str | None = None
    """Test hook ``RANK:STEP:raise|kill|hang``: that rank fails (or stops answering) at that step."""

    # Parsed once per process: cached_property stores into the instance's __dict__ directly, which
    # a frozen dataclass allows; pickling sends only the fields, so every process parses its own.
    @cached_property
    def plan(self) -> ParallelPlan:
        return ParallelPlan.model_validate_json(self.plan_json)

    @cached_property
    def preset(self) -> ModelPreset:
        return ModelPreset.model_validate_json(self.preset_json)

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def fault_hook(job: Job, rank: int):
    if not job.fault:
        return lambda step: None
    f_rank, f_step, kind = job.fault.split(":")

    def hook(step: int) -> None:
        if rank == int(f_rank) and step == int(f_step):
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if kind == "hang":
                time.sleep(3600)
            raise RuntimeError(f"injected fault at step {step}")
    return hook


def run_rank(job: Job, dist: DistContext) -> dict[str, Any]:
    """Run this rank's share of the plan; returns its payload for the launcher.

    The plan's strategies (:func:`runtime.strategies.for_plan`) choose the replica, the
    guidance and the loop; this function only wires them to the model and the inputs.
    """
    plan, preset = job.plan, job.preset
    chosen = for_plan(plan)
    coord = dist.coord
    replica = chosen.replicas.replica(coord)
    image_seed = chosen.replicas.seed(job.seed, replica)
    dtype = getattr(torch, job.dtype)
    parts = load_model_parts(preset, model_path=Path(job.model_path) if job.model_path else None,
                             seed=WEIGHT_SEED, device=job.device, dtype=dtype, with_vae=job.decode)
    rows, cols = preset.token_grid(plan.height_px, plan.width_px)
    model = ModelView(preset=preset, transformer=parts.transformer, scheduler=parts.scheduler, rows=rows, cols=cols)
    share = chosen.loop.share(plan, preset, coord)
    loop = chosen.loop.prepare(model, share, dist)
    if loop.staged is not None:  # free the blocks this rank does not run
        drop_other_stages(loop.staged, share.layers, last=share.last_stage)
    prompt = chosen.replicas.pick(job.prompts, replica)
    embeds = chosen.replicas.pick(job.prompt_embeds, replica)
    cond = make_conditioning(preset, seed=image_seed, prompt=prompt,
                             prompt_embeds_file=Path(embeds) if embeds else None)
    guidance = chosen.guidance.guidance(preset, plan, coord, dist, cond.guidance_scale)
    branch = cond.branches(guidance.branches)
    device = torch.device(job.device)
    branch = type(branch)(**{k: (v.to(device) if v is not None else None) for k, v in vars(branch).items()})
    latent = initial_latent(preset, plan.height_px, plan.width_px, image_seed, dtype=dtype).to(device)
    rec = Recorder(rank=dist.rank, cuda=device.type == "cuda")
    setup = StageSetup(
        model=model,
        inputs=RankInputs(branch=branch, latent=latent, guidance=guidance,
                          generator=torch.Generator(device="cpu").manual_seed(image_seed)),
        share=share, place=RankPlace(dist=dist, pipeline=tuple(dist.pipeline())),
        recording=Recording(rec=rec, on_step=fault_hook(job, dist.rank)))
    dist.barrier()
    rec.restart()
    cpu0 = time.process_time()
    with torch.inference_mode():
        final = loop.run(setup)
        output_rank = final is not None and guidance.writes_output
        png = None
        if output_rank and job.decode and parts.vae is not None:
            with rec.span("vae decode", "vae"):
                png = decode_png(parts.vae, final)
    end_s = rec.now_s()
    cpu_s = time.process_time() - cpu0
    params = sum(p.numel() for p in parts.transformer.parameters() if p.device.type != "meta")
    return {"rank": dist.rank, "replica": replica, "events": rec.events, "output": output_rank, "params": params,
            "cpu_s": cpu_s,
            "latent": final.float().cpu().numpy() if output_rank else None, "png": png, "end_s": end_s,
            "step_end_s": setup.recording.step_end_s if output_rank else None}


def drop_other_stages(staged: StagedModel, layers: range, *, last: bool) -> None:
    """Free the weights of blocks other stages run (parameters ≈ P/N per rank).

    The family's adapter frees each one (DiT's last stage keeps block 0's label/timestep
    embedding: its output layer reads it).
    """
    for index, block in enumerate(staged.blocks):
        if index not in layers:
            staged.adapter.drop_block(block, index, last_stage=last)


def decode_png(vae: Any, latent: torch.Tensor) -> bytes:
    """VAE decode of the final latent, as PNG bytes."""
    from PIL import Image

    scale = getattr(vae.config, "scaling_factor", 1.0) or 1.0
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    image = vae.decode(latent / scale + shift, return_dict=False)[0]
    image = (image / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray((image * 255).round().astype("uint8")).save(buf, format="PNG")
    return buf.getvalue()
