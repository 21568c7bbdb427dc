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
from simulator.plan_files import load_plan, plan_model

app = typer.Typer(name="pfrun", help="Run a parallel plan (plan.json) with torch.distributed. "
                  "Add --debug to see tracebacks.", add_completion=False, pretty_exceptions_enable=False)

FAULT_ENV = "PFRUN_FAULT"
"""Test hook: ``RANK:STEP:raise|kill|hang`` makes that rank fail or hang at that step (fault tests)."""


def image_path(out: Path, replica: int) -> Path:
    """``image.png`` for replica 0, ``image-1.png`` … for the other data-parallel replicas."""
    return out if replica == 0 else out.with_name(f"{out.stem}-{replica}{out.suffix}")


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
    model_path: Optional[Path] = typer.Option(None, "--model-path", help="Local diffusers folder (transformer/, vae/, scheduler/); default: the plan's preset with seeded random weights."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", help="Prompt text (without text encoders it seeds random embeddings); repeat it to give data-parallel replicas their own prompts."),
    prompt_embeds: Optional[list[Path]] = typer.Option(None, "--prompt-embeds", help="torch.save'd dict {'cond': {...}, 'uncond': {...}} of embeddings; repeatable like --prompt."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial latent (replica i uses seed + i)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the image here (PNG, atomically)."),
    trace: Optional[Path] = typer.Option(None, "--trace", help="Write the measured trace (Chrome trace JSON)."),
    reference: bool = typer.Option(False, "--reference", help="Also run serially and report max abs diff and PSNR."),
    timeout: float = typer.Option(60.0, "--timeout", min=1.0, help="Seconds a rank waits for a peer before the run fails."),
    threads: int = typer.Option(1, "--threads", min=1, help="Intra-op threads per rank on CPU."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto (cuda when available)."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16 (weights, activations, latents)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Execute the plan and print the measured latency."""
    from runtime.run import check_runnable, compare, execute, job_for, serial_plan

    plan = load_plan(plan_file)
    prompts, embeds_files = tuple(prompt or ()), tuple(str(p) for p in prompt_embeds or ())
    if prompts and embeds_files:
        raise InputError("give --prompt or --prompt-embeds, not both", field="--prompt")
    if model_path is not None:
        if not model_path.is_dir():
            raise InputError("not a directory", file=str(model_path), field="--model-path")
        preset = load_model(str(model_path))
    else:
        preset = plan_model(plan, file=str(plan_file))
    check_runnable(plan, preset, file=str(plan_file))
    if embeds_files:
        from runtime.model_inputs import load_prompt_embeds

        for path in embeds_files:  # a bad file is the user's mistake: one line, exit 2, before any rank starts
            load_prompt_embeds(preset, Path(path))
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise InputError(f"expected cpu, cuda or auto, got {device!r}", field="--device")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("cuda asked for, but torch sees no CUDA device (use --device cpu)", field="--device")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise InputError(f"expected float32, bfloat16 or float16, got {dtype!r}", field="--dtype")
    outputs = {f"--out (replica {r})" if r else "--out": image_path(out, r) for r in range(plan.degrees.data)} \
        if out is not None else {}
    if trace is not None:
        outputs["--trace"] = trace
    guard_outputs(outputs, {"--plan": plan_file, "--model-path": model_path, **{f"--prompt-embeds {p}": p for p in embeds_files}})
    options = dict(model_path=str(model_path) if model_path else None, seed=seed, prompts=prompts, dtype=dtype,
                   prompt_embeds=embeds_files, timeout_s=timeout,
                   threads=threads, device=device)
    with tempfile.TemporaryDirectory(prefix="pfrun-") as scratch:
        from runtime.text_encoding import encode_prompt, has_text_encoders, save_conditioning

        if not embeds_files and has_text_encoders(model_path):
            files = []
            for i, text in enumerate(prompts or ("",)):  # each prompt encoded once, shared by every rank
                files.append(str(Path(scratch) / f"prompt_embeds_{i}.pt"))
                save_conditioning(encode_prompt(preset, model_path, text), Path(files[-1]))
            options.update(prompts=(), prompt_embeds=tuple(files))
        result = execute(job_for(plan, preset, fault=os.environ.get(FAULT_ENV), **options))
        ref = execute(job_for(serial_plan(plan), preset, **options), in_process=True) \
            if reference and result.events else None
    if not result.events:  # a torchrun rank other than 0: rank 0 reports
        return
    files: list[tuple[Path, bytes]] = []
    if out is not None:
        files += [(image_path(out, replica), png) for replica, png in sorted(result.pngs.items())]
    written = [str(path) for path, _ in files]
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


main = entry_point(app, "pfrun")

if __name__ == "__main__":
    main()
