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
import sys
import time
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from profiles.catalog.models import ModelPreset
from runtime.dist_context import DistContext
from runtime.measure import Recorder
from runtime.families import adapter_for
from runtime.model_inputs import make_conditioning
from runtime.model_loading import load_model_parts
from runtime.pipeline_prep import default_guidance, rank_pipeline, vae_scale_factor
from runtime.sampling import Sampling
from runtime.staged_model import StagedModel
from runtime.strategies import for_plan
from runtime.strategies.cfg import Unguided
from runtime.strategies.base import ModelView, RankInputs, RankPlace, Recording, StageSetup
from runtime.video_output import decode_video
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
    guidance_scale: float | None = None
    """CFG scale (Flux: the distilled guidance value); None: the pipeline's own default."""
    num_images: int = 1
    """Images per prompt; image ``k`` takes prompt ``k // num_images`` and seed ``seed + k``."""
    images: int = 0
    """Images of the run (0: one per data-parallel replica); replica ``r`` makes images r, r + D, …"""
    output_size: tuple[int, int] | None = None
    """The image's height and width when the pipeline generated at another (its resolution bin)."""
    progress: bool = False
    """A progress bar over the steps on rank 0 (stderr)."""
    scheduler: str | None = None
    """A diffusers scheduler class replacing the folder's or preset's (built from its config)."""
    vae_tiling: bool = False
    """Decode with the VAE's tiling (``vae.enable_tiling()``): lower peak memory for large images and clips."""

    # Parsed once per process: cached_property stores into the instance's __dict__ directly, which
    # a frozen dataclass allows; pickling sends only the fields, so every process parses its own.
    @cached_property
    def plan(self) -> ParallelPlan:
        return ParallelPlan.model_validate_json(self.plan_json)

    @cached_property
    def preset(self) -> ModelPreset:
        """The preset generating the plan's ``frames`` (a video's latent grid depends on them)."""
        return ModelPreset.model_validate_json(self.preset_json).with_frames(self.plan.frames)

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
    guidance and the loop; the pipeline (:mod:`runtime.pipeline_prep`) draws the latent and
    says how to sample (:mod:`runtime.sampling`); this function wires them together, once
    per image of the replica.
    """
    plan, preset = job.plan, job.preset
    chosen = for_plan(plan)
    coord = dist.coord
    replica = chosen.replicas.replica(coord)
    dtype = getattr(torch, job.dtype)
    device = torch.device(job.device)
    model_path = Path(job.model_path) if job.model_path else None
    parts = load_model_parts(preset, model_path=model_path, seed=WEIGHT_SEED, device=job.device, dtype=dtype,
                             with_vae=job.decode, scheduler=job.scheduler)
    pipe = rank_pipeline(preset, transformer=parts.transformer, scheduler=parts.scheduler, vae=parts.vae,
                         model_path=model_path)
    adapter = adapter_for(preset.family)
    rows, cols = preset.token_grid(plan.height_px, plan.width_px)
    model = ModelView(preset=preset, transformer=parts.transformer, scheduler=parts.scheduler, rows=rows, cols=cols)
    share = chosen.loop.share(plan, preset, coord)
    loop = chosen.loop.prepare(model, share, dist)
    if loop.staged is not None:  # free the blocks this rank does not run
        drop_other_stages(loop.staged, share.layers, last=share.last_stage)
    scale = job.guidance_scale if job.guidance_scale is not None else default_guidance(pipe)
    guidance = chosen.guidance.guidance(preset, plan, coord, dist, scale)
    if preset.uses_cfg and scale <= 1 and not adapter.distilled_guidance:
        guidance = Unguided()  # the pipelines run no CFG at guidance_scale <= 1 (cfg=2 is refused before launch)
    replicas = plan.degrees.data
    mine = list(range(replica, max(job.images, replicas), replicas))
    rec = Recorder(rank=dist.rank, cuda=device.type == "cuda")
    bar = progress_bar(job, dist.rank, share.steps * len(mine))
    recording = Recording(rec=rec, on_step=with_progress(fault_hook(job, dist.rank), bar))
    outputs: dict[int, dict[str, Any]] = {}
    dist.barrier()
    rec.restart()
    cpu0 = time.process_time()
    with torch.inference_mode():
        for image in mine:
            setup = image_setup(job, image, pipe=pipe, model=model, share=share, guidance=guidance, scale=scale,
                                dist=dist, recording=recording, dtype=dtype, device=device)
            final = loop.run(setup)
            if final is None or not guidance.writes_output:
                continue
            png = video = None
            if job.decode and parts.vae is not None:
                with rec.span("vae decode", "vae"):
                    if preset.is_video:  # (F, H, W, 3) uint8 frames; the launcher encodes the clip
                        video = decode_video(parts.vae, final.to(parts.vae.dtype), preset.latent_frames(),
                                             tiled=job.vae_tiling).numpy()
                    else:
                        png = decode_png(pipe, final, job.output_size)
            outputs[image] = {"latent": final.float().cpu().numpy(), "png": png, "video": video,
                              "step_end_s": list(recording.step_end_s)}
            recording.step_end_s.clear()
    if bar is not None:
        bar.close()
    end_s = rec.now_s()
    cpu_s = time.process_time() - cpu0
    params = sum(p.numel() for p in parts.transformer.parameters() if p.device.type != "meta")
    first = outputs.get(replica)
    return {"rank": dist.rank, "replica": replica, "events": rec.events, "output": bool(outputs), "params": params,
            "cpu_s": cpu_s, "images": outputs,
            "latent": first["latent"] if first else None, "png": first["png"] if first else None, "end_s": end_s,
            "step_end_s": first["step_end_s"] if first else None}


def image_setup(job: Job, image: int, *, pipe: Any, model: ModelView, share: Any, guidance: Any, scale: float,
                dist: DistContext, recording: Recording, dtype: torch.dtype, device: torch.device) -> StageSetup:
    """Inputs of image ``image``: its conditioning, and one generator that draws its latent, then its step noise."""
    preset, plan = job.preset, job.plan
    adapter = adapter_for(preset.family)
    seed = job.seed + image
    which = image // max(job.num_images, 1)
    prompt = job.prompts[which % len(job.prompts)] if job.prompts else None
    embeds = job.prompt_embeds[which % len(job.prompt_embeds)] if job.prompt_embeds else None
    cond = make_conditioning(preset, seed=seed, prompt=prompt, prompt_embeds_file=Path(embeds) if embeds else None)
    if adapter.distilled_guidance:
        cond.cond.guidance = torch.tensor([scale], dtype=torch.float32)
    branch = cond.branches(guidance.branches)
    branch = type(branch)(**{k: (v.to(device) if v is not None else None) for k, v in vars(branch).items()})
    generator = torch.Generator(device="cpu").manual_seed(seed)
    latent = adapter.prepare_latents(pipe, plan.height_px, plan.width_px, generator, dtype, device)
    sampling = Sampling(scheduler=model.scheduler, steps=share.steps, generator=generator,
                        scales_input=adapter.scales_model_input, steps_scaled_input=adapter.steps_scaled_input,
                        **adapter.timestep_recipe(pipe, share.steps, tuple(latent.shape)))
    return StageSetup(model=model,
                      inputs=RankInputs(branch=branch, latent=latent, guidance=guidance, generator=generator,
                                        sampling=sampling),
                      share=share, place=RankPlace(dist=dist, pipeline=tuple(dist.pipeline())), recording=recording)


def progress_bar(job: Job, rank: int, total: int) -> Any:
    """tqdm over the steps on rank 0, only when asked for and stderr is a terminal."""
    if not job.progress or rank != 0 or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="pfrun", unit="step", file=sys.stderr, leave=False)


def with_progress(hook: Any, bar: Any) -> Any:
    if bar is None:
        return hook

    def on_step(step: int) -> None:
        hook(step)
        bar.update(1)
    return on_step


def drop_other_stages(staged: StagedModel, layers: range, *, last: bool) -> None:
    """Free the weights of blocks other stages run (parameters ≈ P/N per rank).

    The family's adapter frees each one (DiT's last stage keeps block 0's label/timestep
    embedding: its output layer reads it).
    """
    for index, block in enumerate(staged.blocks):
        if index not in layers:
            staged.adapter.drop_block(block, index, last_stage=last)


def decode_png(pipe: Any, latent: torch.Tensor, output_size: tuple[int, int] | None = None) -> bytes:
    """The pipeline's decode of the final latent (``/ scaling_factor + shift_factor``), resized back to the
    requested size where the pipeline binned it, post-processed by its image processor, as PNG bytes."""
    from diffusers.image_processor import VaeImageProcessor

    vae = getattr(pipe, "vae", pipe)  # a pipeline, or a bare VAE (the profiler times this call)
    scale = getattr(vae.config, "scaling_factor", 1.0) or 1.0
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    image = vae.decode(latent / scale + shift, return_dict=False)[0]
    if output_size is not None and tuple(image.shape[-2:]) != tuple(output_size):
        image = VaeImageProcessor.resize_and_crop_tensor(image, output_size[1], output_size[0])
    processor = getattr(pipe, "image_processor", None) or VaeImageProcessor(vae_scale_factor=vae_scale_factor(pipe)
                                                                             if vae is not pipe else 8)
    pil = processor.postprocess(image, output_type="pil")[0]
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()
