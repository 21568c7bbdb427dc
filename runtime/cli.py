"""The ``pfrun`` command: execute a plan.json with torch.distributed.

A thin typer shell over :mod:`runtime.run`: it reads the plan and the model, refuses
plans the runtime cannot execute with one line (exit 2), runs the ranks, and only then
writes the image(s) and the trace, all or none (:mod:`runtime.outputs`; their paths are
checked before the run). A failed run (a rank raised, died or timed
out) is one line naming the rank, exit 1, and no files.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from profiles.cli_support import entry_point, out_console, print_json
from profiles.errors import InputError
from profiles.catalog.models import load_model
from profiles.output_guard import guard_outputs
from runtime.outputs import write_all
from simulator.plan import ParallelPlan
from simulator.plan_files import load_plan, plan_model

app = typer.Typer(name="pfrun", help="Run a parallel plan (plan.json) with torch.distributed. "
                  "Add --debug to see tracebacks.", add_completion=False, pretty_exceptions_enable=False)

FAULT_ENV = "PFRUN_FAULT"
"""Test hook: ``RANK:STEP:raise|kill|hang`` makes that rank fail or hang at that step (fault tests)."""


def image_path(out: Path, image: int) -> Path:
    """``image.png`` for image 0, ``image-1.png`` … for the others (image k is made by replica k mod data)."""
    return out if image == 0 else out.with_name(f"{out.stem}-{image}{out.suffix}")


def json_safe(value: Any) -> Any:
    """JSON has no infinity: an identical image's PSNR (inf) is written as null."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and math.isinf(value):
        return None
    return value


@app.command()
def run(
    plan_file: Path = typer.Option(..., "--plan", help="plan.json written by pfplan search."),
    model_path: Optional[Path] = typer.Option(None, "--model-path", help="Local diffusers folder (transformer/, vae/, scheduler/, text encoders); default: the plan's preset with seeded random weights."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", help="Prompt text (encoded by the folder's text encoders; without them it seeds stand-in embeddings; DiT: a class id). Repeat it for several images."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="One prompt per line (blank lines skipped): a batch for throughput runs; data parallel replicas share them out."),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="The CFG branch's prompt, as the pipeline's negative_prompt."),
    num_images: int = typer.Option(1, "--num-images", min=1, help="Images per prompt (image k: seed + k)."),
    prompt_embeds: Optional[list[Path]] = typer.Option(None, "--prompt-embeds", help="torch.save'd dict {'cond': {...}, 'uncond': {...}} of embeddings; repeatable like --prompt."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Denoising steps (default: the plan's)."),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", help="CFG scale (Flux: its distilled guidance); default: the pipeline's own (PixArt 4.5, SD3 7.0, Flux 3.5, DiT 4.0, HunyuanDiT 5.0)."),
    height: Optional[int] = typer.Option(None, "--height", min=1, help="Image height; the pipeline's generation size for it (its resolution bin) must be the plan's."),
    width: Optional[int] = typer.Option(None, "--width", min=1, help="Image width (see --height)."),
    resolution_binning: Optional[bool] = typer.Option(None, "--resolution-binning/--no-resolution-binning", help="Map the size to the pipeline's resolution bins as PixArt and HunyuanDiT do; default: on with --model-path (the pipeline's default), off for a preset's random weights."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="A diffusers scheduler class to use instead of the folder's (built from its config)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator of image 0 (image k uses seed + k): the latent, then the step noise."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the image here (PNG, atomically); image k > 0 as NAME-k.png. A video model writes its clip: NAME.mp4 (needs imageio-ffmpeg) or NAME.gif."),
    frames_dir: Optional[Path] = typer.Option(None, "--frames-dir", help="A video model's frames as PNGs in this existing folder: frame_0000.png … (clip k > 0: clip-k_frame_0000.png …)."),
    vae_tiling: bool = typer.Option(False, "--vae-tiling", help="Decode with the VAE's tiling (lower peak memory for large images and long clips)."),
    latents_out: Optional[Path] = typer.Option(None, "--latents", help="Write the final latents (torch.save of {image: (1, C, H, W) float32})."),
    trace: Optional[Path] = typer.Option(None, "--trace", help="Write the measured trace (Chrome trace JSON)."),
    reference: bool = typer.Option(False, "--reference", help="Also run serially and report max abs diff and PSNR."),
    timeout: float = typer.Option(60.0, "--timeout", min=1.0, help="Seconds a rank waits for a peer before the run fails."),
    threads: int = typer.Option(1, "--threads", min=1, help="Intra-op threads per rank on CPU."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto (cuda when available)."),
    emulate_on_cpu: bool = typer.Option(False, "--emulate-on-cpu", help="Run a GPU plan's ranks as CPU processes on this machine."),
    force: bool = typer.Option(False, "--force", help="Start even when the predicted memory exceeds the free memory, or the GPUs are of another kind."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16 (weights, activations, latents)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A progress bar over the steps on rank 0 (only when stderr is a terminal)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Execute the plan and print the measured latency."""
    from runtime.run import check_runnable, compare, execute, job_for, serial_plan

    plan = load_plan(plan_file)
    prompts = tuple(prompt or ()) + read_prompt_file(prompt_file)
    embeds_files = tuple(str(p) for p in prompt_embeds or ())
    if prompts and embeds_files:
        raise InputError("give --prompt / --prompt-file or --prompt-embeds, not both", field="--prompt")
    if model_path is not None:
        if not model_path.is_dir():
            raise InputError("not a directory", file=str(model_path), field="--model-path")
        preset = folder_preset(model_path).with_frames(plan.frames)
    else:
        preset = plan_model(plan, file=str(plan_file))
    if steps is not None:
        plan = with_steps(plan, steps)
    check_runnable(plan, preset, file=str(plan_file))
    if embeds_files:
        from runtime.model_inputs import load_prompt_embeds

        for path in embeds_files:  # a bad file is the user's mistake: one line, exit 2, before any rank starts
            load_prompt_embeds(preset, Path(path))
    if device not in ("cpu", "cuda", "auto"):
        raise InputError(f"expected cpu, cuda or auto, got {device!r}", field="--device")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise InputError(f"expected float32, bfloat16 or float16, got {dtype!r}", field="--dtype")
    if scheduler is not None:
        check_scheduler(scheduler)
    check_negative(preset, negative_prompt)
    binning = resolution_binning if resolution_binning is not None else model_path is not None
    output_size = check_size(plan, preset, model_path, height=height, width=width, binning=binning,
                             file=str(plan_file))
    if guidance_scale is not None and guidance_scale <= 1 and preset.uses_cfg and plan.degrees.cfg > 1:
        raise InputError(f"--guidance-scale {guidance_scale:g} turns classifier-free guidance off (as the pipeline "
                         "does at <= 1), but the plan splits its two branches (cfg=2); use a plan with cfg=1",
                         field="--guidance-scale")
    from runtime.preflight import preflight
    from simulator.plan import plan_cluster

    device = preflight(plan, preset, plan_cluster(plan, file=str(plan_file)), device=device, dtype=dtype,
                       emulate_on_cpu=emulate_on_cpu, force=force)
    images = max(len(prompts or embeds_files) * num_images, plan.degrees.data) if (prompts or embeds_files) \
        else max(num_images, plan.degrees.data)
    outputs = {f"--out (image {k})" if k else "--out": image_path(out, k) for k in range(images)} \
        if out is not None else {}
    outputs.update(video_outputs(preset, model_path, out, frames_dir, images))
    if trace is not None:
        outputs["--trace"] = trace
    if latents_out is not None:
        outputs["--latents"] = latents_out
    guard_outputs(outputs, {"--plan": plan_file, "--model-path": model_path, "--prompt-file": prompt_file,
                            **{f"--prompt-embeds {p}": p for p in embeds_files}})
    options = dict(model_path=str(model_path) if model_path else None, seed=seed, prompts=prompts, dtype=dtype,
                   prompt_embeds=embeds_files, timeout_s=timeout, threads=threads, device=device,
                   guidance_scale=guidance_scale, num_images=num_images, images=images, output_size=output_size,
                   scheduler=scheduler, vae_tiling=vae_tiling,
                   progress=progress and os.environ.get("PYTEST_CURRENT_TEST") is None)
    with tempfile.TemporaryDirectory(prefix="pfrun-") as scratch:
        from runtime.text_encoding import encode_prompt, encoding_pipeline, has_text_encoders, save_conditioning

        if not embeds_files and has_text_encoders(model_path):
            files = []
            pipe = encoding_pipeline(preset, model_path)
            for i, text in enumerate(prompts or ("",)):  # each prompt encoded once, shared by every rank
                files.append(str(Path(scratch) / f"prompt_embeds_{i}.pt"))
                save_conditioning(encode_prompt(preset, model_path, text, negative_prompt, pipe=pipe),
                                  Path(files[-1]))
            options.update(prompts=(), prompt_embeds=tuple(files))
        result = execute(job_for(plan, preset, fault=os.environ.get(FAULT_ENV), **options))
        ref = execute(job_for(serial_plan(plan), preset, **{**options, "images": 1}), in_process=True) \
            if reference and result.events else None
    if not result.events:  # a torchrun rank other than 0: rank 0 reports
        return
    files: list[tuple[Path, bytes]] = []
    if out is not None:
        files += [(image_path(out, k), png) for k, png in sorted(result.pngs.items())]
    files += video_files(preset, result.videos, out, frames_dir)
    written = [str(path) for path, _ in files]
    if latents_out is not None:
        files.append((latents_out, latents_bytes(result.latents)))
    if trace is not None:
        measured = result.trace(model=preset.name, plan=plan, device=device,
                                command=" ".join(["pfrun", *sys.argv[1:]]))
        files.append((trace, (measured.model_dump_json(exclude_none=True) + "\n").encode()))
    write_all(files)  # every output or none
    report = {"plan": plan.degrees.label(), "model": preset.name, "world_size": plan.world_size,
              "latency_s": result.latency_s, "step_times_s": result.step_times_s, "images": written,
              "trace": str(trace) if trace else None}
    if ref is not None:
        report["reference"] = compare(result.latents[0], ref.latents[0], result.pngs.get(0), ref.pngs.get(0))
        report["reference"]["serial_latency_s"] = ref.latency_s
    if as_json:
        print_json(json_safe(report))
        return
    out_console.print(f"{preset.name} {plan.degrees.label()} ({plan.world_size} rank"
                      f"{'s' if plan.world_size > 1 else ''}, M={plan.patches}, W={plan.warmup_steps}, "
                      f"T={plan.steps}): latency {result.latency_s:.3f} s, "
                      f"steps {', '.join(f'{t:.3f}' for t in result.step_times_s)} s")
    if ref is not None:
        r = report["reference"]
        psnr = "n/a" if r["psnr_db"] is None else ("inf" if math.isinf(r["psnr_db"]) else f"{r['psnr_db']:.2f} dB")
        out_console.print(f"vs serial: max abs diff {r['max_abs_diff']:.3g} (latent), PSNR {psnr}; "
                          f"serial latency {ref.latency_s:.3f} s")
    for path in written:
        out_console.print(f"image: {path}")
    if trace is not None:
        out_console.print(f"trace: {trace}")


def read_prompt_file(path: Path | None) -> tuple[str, ...]:
    """The non-blank lines of ``--prompt-file``."""
    if path is None:
        return ()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError("file not found", file=str(path), field="--prompt-file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read ({type(exc).__name__})", file=str(path), field="--prompt-file") from None
    prompts = tuple(line.strip() for line in lines if line.strip())
    if not prompts:
        raise InputError("no prompts (one per line expected)", file=str(path), field="--prompt-file")
    return prompts


def clip_frame_paths(frames_dir: Path, clip: int, count: int) -> list[Path]:
    """Clip 0's frames ``frame_0000.png`` …, clip k's ``clip-k_frame_0000.png`` …, all in ``frames_dir``."""
    from runtime.video_output import frame_paths

    return frame_paths(frames_dir, count, "frame" if clip == 0 else f"clip-{clip}_frame")


def video_outputs(preset: Any, model_path: Path | None, out: Path | None, frames_dir: Path | None,
                  clips: int) -> dict[str, Path]:
    """The frame files a video run writes (for the output guard); refusals before any rank starts."""
    from runtime.video_output import check_video_path

    if not preset.is_video:
        if frames_dir is not None:
            raise InputError(f"{preset.name} is an image model: it has no frames to write", field="--frames-dir")
        return {}
    if out is None and frames_dir is None:
        return {}
    if out is not None:
        check_video_path(out)
    if model_path is None or not (model_path / "vae").is_dir():
        raise InputError(f"{preset.name} has no VAE to decode its clip with: pass --model-path with a vae/ "
                         "folder (e.g. AutoencoderKLWan)", field="--out" if out is not None else "--frames-dir")
    if frames_dir is not None and frames_dir.exists() and not frames_dir.is_dir():
        raise InputError("is a file; give a folder", file=str(frames_dir), field="--frames-dir")
    return {f"--frames-dir (clip {k}, frame {i})": path for k in range(clips) if frames_dir is not None
            for i, path in enumerate(clip_frame_paths(frames_dir, k, preset.default_frames))}


def video_files(preset: Any, videos: dict[int, Any], out: Path | None,
                frames_dir: Path | None) -> list[tuple[Path, bytes]]:
    """The encoded clip(s) at ``--out`` and their PNG frames under ``--frames-dir``."""
    from runtime.video_output import encode_video, frame_pngs

    files: list[tuple[Path, bytes]] = []
    for k, frames in sorted(videos.items()):
        if out is not None:
            files.append((image_path(out, k), encode_video(frames, out.suffix, fps=preset.fps or 16.0)))
        if frames_dir is not None:
            files += list(zip(clip_frame_paths(frames_dir, k, len(frames)), frame_pngs(frames)))
    return files


def folder_preset(model_path: Path) -> Any:
    """The folder's preset, its VAE scale factor read from its VAE's config (not an assumed 8)."""
    import json

    preset = load_model(str(model_path))
    config = model_path / "vae" / "config.json"
    if config.is_file():
        try:
            levels = len(json.loads(config.read_text()).get("block_out_channels", [0] * 4))
        except (OSError, ValueError):
            raise InputError("not a JSON VAE config", file=str(config)) from None
        preset = preset.model_copy(update={"vae_scale_factor": 2 ** (levels - 1)})
    return preset


def with_steps(plan: ParallelPlan, steps: int) -> ParallelPlan:
    """The plan with ``steps`` steps; a plan warm all through stays warm all through."""
    warmup = steps if plan.warmup_steps >= plan.steps else min(plan.warmup_steps, steps)
    return plan.model_copy(update={"steps": steps, "warmup_steps": warmup, "prediction": None})


def check_scheduler(name: str) -> None:
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None or not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        known = sorted(n for n in dir(diffusers) if n.endswith("Scheduler"))
        raise InputError(f"not a diffusers scheduler class: {name!r}; e.g. {', '.join(known[:6])}",
                         field="--scheduler")


def check_negative(preset: Any, negative: str) -> None:
    """Refuse a negative prompt the pipeline would not use (Flux without true CFG; DiT)."""
    if negative and not preset.uses_cfg:
        raise InputError(f"{preset.name} runs without classifier-free guidance: its pipeline would ignore "
                         "--negative-prompt", field="--negative-prompt")


def check_size(plan: ParallelPlan, preset: Any, model_path: Path | None, *, height: int | None,
               width: int | None, binning: bool, file: str) -> tuple[int, int] | None:
    """The requested size's generation size (the pipeline's bin) must be the plan's; returns the size to
    resize the image back to, or None when it is the plan's."""
    from runtime.families import adapter_for
    from runtime.pipeline_prep import LazyPipeline, pipeline_class, size_pipeline

    want = (height or plan.height_px, width or plan.width_px)
    gen = adapter_for(preset.family).generation_size(LazyPipeline(lambda: size_pipeline(preset, model_path)),
                                                     *want, binning)
    if gen != (plan.height_px, plan.width_px):
        if gen == want:
            message = f"the plan is for {plan.height_px}×{plan.width_px}, the image asked for is {want[0]}×{want[1]}"
        else:
            message = (f"the plan is for {plan.height_px}×{plan.width_px}, and {pipeline_class(preset, model_path).__name__} "
                       f"bins {want[0]}×{want[1]} to {gen[0]}×{gen[1]}; search a plan for {gen[0]}×{gen[1]}, or pass "
                       "--no-resolution-binning")
        raise InputError(message, file=file, field="height_px")
    return None if gen == want else want


def latents_bytes(latents: dict[int, Any]) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({k: v for k, v in sorted(latents.items())}, buf)
    return buf.getvalue()


main = entry_point(app, "pfrun")

if __name__ == "__main__":
    main()
