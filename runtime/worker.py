"""One rank of a run: load the model, build its inputs, run its executor, decode the image.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from profiles.models import ModelPreset
from runtime.dist_context import DistContext
from runtime.strategies.pipefusion import StageSetup, run_stage
from runtime.strategies.ulysses import run_ulysses
from runtime.measure import Recorder
from runtime.model_inputs import initial_latent, make_conditioning
from runtime.model_loading import load_model_parts
from runtime.staged_model import StagedModel
from runtime.stale_kv import KVState, install_stale_kv
from runtime.ulysses import UlyssesExchange, install_ulysses
from simulator.plan import ParallelPlan, patch_rows
from simulator.rank_groups import group_of

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

    @property
    def plan(self) -> ParallelPlan:
        return ParallelPlan.model_validate_json(self.plan_json)

    @property
    def preset(self) -> ModelPreset:
        return ModelPreset.model_validate_json(self.preset_json)


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
    """Run this rank's share of the plan; returns its payload for the launcher."""
    plan, preset = job.plan, job.preset
    deg = plan.degrees
    coord = dist.coord
    replica = coord["data"]
    image_seed = job.seed + replica
    dtype = getattr(torch, job.dtype)
    parts = load_model_parts(preset, model_path=Path(job.model_path) if job.model_path else None,
                             seed=WEIGHT_SEED, device=job.device, dtype=dtype, with_vae=job.decode)
    rows, cols = preset.token_grid(plan.height_px, plan.width_px)
    stage = coord["pipefusion"]
    layers = plan.stage_layers(preset)[stage]
    pipelined = deg.pipefusion > 1 or plan.patches > 1
    staged = exchange = None
    if deg.ulysses > 1:
        staged = StagedModel(preset, parts.transformer, rows, cols, KVState())
        exchange = UlyssesExchange(dist, dist.ulysses_group, deg.ulysses, group_of(dist.rank, "ulysses", deg.as_dict()),
                                   cuda=job.device.startswith("cuda"))
        install_ulysses(preset.family, staged.blocks, exchange)
    elif pipelined:
        kv = KVState()
        staged = StagedModel(preset, parts.transformer, rows, cols, kv)
        install_stale_kv(preset.family, staged.blocks[layers.start:layers.stop], kv)
        drop_other_stages(staged, layers, last=stage == deg.pipefusion - 1)
    prompt = job.prompts[replica % len(job.prompts)] if job.prompts else None
    embeds = Path(job.prompt_embeds[replica % len(job.prompt_embeds)]) if job.prompt_embeds else None
    cond = make_conditioning(preset, seed=image_seed, prompt=prompt, prompt_embeds_file=embeds)
    if preset.uses_cfg and deg.cfg == 2:
        cfg_mode, names = "parallel", ("uncond", "cond")[coord["cfg"]:coord["cfg"] + 1]
    elif preset.uses_cfg:
        cfg_mode, names = "batch", ("uncond", "cond")
    else:
        cfg_mode, names = "none", ("cond",)
    branch = cond.branches(names)
    device = torch.device(job.device)
    branch = type(branch)(**{k: (v.to(device) if v is not None else None) for k, v in vars(branch).items()})
    latent = initial_latent(preset, plan.height_px, plan.width_px, image_seed, dtype=dtype).to(device)
    rec = Recorder(rank=dist.rank, cuda=device.type == "cuda")
    setup = StageSetup(
        preset=preset, model=parts.transformer, scheduler=parts.scheduler, branch=branch, latent=latent,
        steps=plan.steps, warmup=plan.warmup_steps if pipelined or exchange else plan.steps,
        patch_rows=patch_rows(rows, plan.patches) if pipelined else [rows], rows=rows, cols=cols,
        layers=layers, stage=stage, stages=deg.pipefusion, pipeline=dist.pipeline(), cfg_mode=cfg_mode,
        guidance_scale=cond.guidance_scale, dist=dist, rec=rec, staged=staged,
        generator=torch.Generator(device="cpu").manual_seed(image_seed), on_step=fault_hook(job, dist.rank))
    dist.barrier()
    rec.restart()
    cpu0 = time.process_time()
    with torch.inference_mode():
        final = run_ulysses(setup, exchange, coord["ulysses"]) if exchange is not None else run_stage(setup)
        output_rank = final is not None and coord["cfg"] == 0
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
            "step_end_s": setup.step_end_s if output_rank else None}


def drop_other_stages(staged: StagedModel, layers: range, *, last: bool) -> None:
    """Free the weights of blocks other stages run (parameters ≈ P/N per rank).

    DiT's output layer reads block 0's label/timestep embedding, so the last stage keeps it.
    """
    for index, block in enumerate(staged.blocks):
        if index in layers:
            continue
        if last and index == 0 and staged.family == "dit":
            for name, child in block.named_children():
                if name != "norm1":
                    child.to("meta")
            for name, child in block.norm1.named_children():
                if name != "emb":
                    child.to("meta")
            continue
        block.to("meta")


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
