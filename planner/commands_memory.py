"""``pfplan memory``: per-component peak memory of one plan, and whether it fits a GPU.

Like ``accelerate estimate-memory``, but for the whole deployment of a DiT plan: the
transformer's share on each device, the text encoders, the VAE and its decode, the
strategies' buffers and the framework overhead (:mod:`simulator.memory`). The plan comes
from ``--model``/``--parallel`` (or ``--plan``), the capacity from ``--gpu`` or the plan's
topology. Knob values pfrun does not execute are flagged in the output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from planner.commands_simulate import build_plan
from profiles.catalog.gpus import get_gpu
from profiles.catalog.models import load_model
from profiles.cli_support import out_console, print_json
from profiles.costs.components import pipeline_components
from profiles.errors import InputError
from simulator.memory import (GIB, MIB, MemoryBreakdown, MemoryOptions, memory_per_rank, not_run_by_pfrun)
from simulator.plan import validate

ROWS = (("transformer weights", "parameters"), ("text encoders", "text_encoders"), ("VAE weights", "vae"),
        ("activations (one block)", "activations"), ("stale K/V buffers", "kv_buffers"),
        ("receive buffers", "receive_buffers"), ("text encoding working set", "encode_working"),
        ("VAE decode working set", "vae_decode"))


def _gib(value: int) -> str:
    return f"{value / GIB:.2f}"


def component_table(ranks: list[MemoryBreakdown], title: str) -> Table:
    """One column per distinct rank layout (ranks with the same bytes are merged)."""
    groups: dict[tuple, list[int]] = {}
    for r, m in enumerate(ranks):
        groups.setdefault(tuple(m.as_dict().values()), []).append(r)
    table = Table(title=title)
    table.add_column("component (GiB)")
    reps = []
    for members in groups.values():
        label = f"rank {members[0]}" if len(members) == 1 else f"ranks {members[0]}–{members[-1]} ({len(members)})"
        table.add_column(label, justify="right")
        reps.append(ranks[members[0]])
    for name, key in ROWS:
        table.add_row(name, *(_gib(m.as_dict()[key]) for m in reps))
    table.add_row("peak allocated (max_memory_allocated)", *(_gib(m.allocated) for m in reps))
    table.add_row("  phase of the peak", *(m.phase for m in reps))
    table.add_row("framework (CUDA context + allocator slack)", *(_gib(m.framework) for m in reps))
    table.add_row("total needed", *(_gib(m.total) for m in reps))
    return table


def register(app: typer.Typer) -> None:
    @app.command("memory")
    def memory_cmd(
        model: Optional[str] = typer.Option(None, help="Model preset, preset file or diffusers config."),
        resolution: Optional[int] = typer.Option(None, min=1, help="Square image side in pixels (default: the model's)."),
        height: Optional[int] = typer.Option(None, min=1, help="Image height in pixels (overrides --resolution)."),
        width: Optional[int] = typer.Option(None, min=1, help="Image width in pixels (overrides --resolution)."),
        parallel: Optional[str] = typer.Option(None, help='Degrees, e.g. "pipefusion=8,patches=16,warmup=1" ("" serial).'),
        plan_file: Optional[Path] = typer.Option(None, "--plan", help="plan.json instead of --model/--parallel."),
        gpu: Optional[str] = typer.Option(None, help="GPU kind whose memory to compare with (e.g. a100-80gb)."),
        topology: Optional[str] = typer.Option(None, help="Topology: its first device's GPU when --gpu is not given."),
        text_encoders: str = typer.Option("gpu", help="gpu (resident), freed (deleted after encoding) or cpu "
                                                      "(encoded elsewhere; what pfrun does)."),
        text_encoder_dtype: Optional[str] = typer.Option(None, help="fp32, fp16, bf16 or fp8 (default: the pipeline's)."),
        vae_decode: str = typer.Option("full", help="full, tiled (vae.enable_tiling), parallel (rows split across the plan's ranks) or none (latent output)."),
        cuda_context_mib: float = typer.Option(500.0, min=0, help="CUDA context per process, MiB (0 on CPU)."),
        fragmentation: float = typer.Option(0.05, min=0, max=1, help="Allocator slack, fraction of the peak."),
        dtype_bytes: int = typer.Option(2, min=1, max=8, help="Bytes per transformer value (2: fp16/bf16)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Peak memory per component and device of one plan; says whether it fits."""
        choices = {"--text-encoders": (text_encoders, ("gpu", "freed", "cpu")),
                   "--vae-decode": (vae_decode, ("full", "tiled", "parallel", "none")),
                   "--text-encoder-dtype": (text_encoder_dtype, (None, "fp32", "fp16", "bf16", "fp8"))}
        for flag, (value, allowed) in choices.items():
            if value not in allowed:
                raise InputError(f"got {value!r}; expected one of {', '.join(a for a in allowed if a)}", field=flag)
        if parallel is None and plan_file is None:
            parallel = ""
        plan = build_plan(plan_file=plan_file, parallel=parallel, model=model, resolution=resolution,
                          height=height, width=width, steps=None, topology=topology)
        preset = load_model(plan.model).with_frames(plan.frames)
        options = MemoryOptions(text_encoders=text_encoders, text_encoder_dtype=text_encoder_dtype,  # type: ignore[arg-type]
                                vae_decode=vae_decode, cuda_context_bytes=int(cuda_context_mib * MIB),  # type: ignore[arg-type]
                                fragmentation=fragmentation)
        gpu_name = gpu
        if gpu_name is None and plan.topology is not None:
            from profiles.topology.graph import load_cluster

            cluster = load_cluster(plan.topology)
            validate(plan, preset, cluster, file=str(plan_file) if plan_file else "--parallel")
            gpu_name = cluster.gpu_of(plan.devices(cluster)[0])
        capacity = get_gpu(gpu_name).memory_bytes if gpu_name else None
        ranks = memory_per_rank(plan, preset, dtype_bytes=dtype_bytes, options=options)
        worst = max(ranks, key=lambda m: m.total)
        fits = None if capacity is None else worst.total <= capacity
        unrun = not_run_by_pfrun(options)
        missing = pipeline_components(preset.spec, preset.arch.latent_channels, tiny=preset.tiny).unknown
        if json_out:
            print_json({"plan": plan.model_dump(mode="json", exclude={"prediction", "provenance"}),
                        "options": options.__dict__, "gpu": gpu_name, "capacity_bytes": capacity, "fits": fits,
                        "per_rank_bytes": [m.as_dict() for m in ranks], "not_run_by_pfrun": unrun,
                        "encoders_not_counted": list(missing)})
            return
        out_console.print(f"{plan.model} {plan.height_px}×{plan.width_px}, {plan.degrees.label()} "
                          f"(patches {plan.patches}, warm-up {plan.warmup_steps}); text encoders {options.text_encoders}"
                          f", VAE decode {options.vae_decode}", markup=False)
        out_console.print(component_table(ranks, "Peak memory per device"))
        if missing:
            out_console.print(f"text encoders with no dimensions in profiles/costs/components.py, not counted: "
                              f"{', '.join(missing)}", markup=False)
        if unrun:
            out_console.print(f"not run by pfrun (planning knobs only): {', '.join(unrun)}", markup=False)
        if capacity is None:
            out_console.print("no --gpu or --topology: capacity unknown", markup=False)
        else:
            verdict = "fits" if fits else "does NOT fit"
            out_console.print(f"{verdict}: needs {worst.total / GIB:.2f} GiB of {capacity / GIB:.2f} GiB "
                              f"on a {gpu_name} ({100 * worst.total / capacity:.0f}%)", markup=False)
