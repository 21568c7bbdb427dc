"""``pfplan profile``: measure compute and links, derive analytic profiles, calibrate.

A thin shell over :mod:`profiler.compute`, :mod:`profiler.links` and
:mod:`profiles.costs.profile_derive`. Each command records in the file it writes the full
command line that reproduces it (every option spelled out, defaults included).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from profiles.cli_support import err_console, out_console, warnings_as_lines
from profiles.errors import InputError
from profiles.loading import write_atomic, write_model_json
from profiles.output_guard import guard_outputs, write_outputs

SIZE_SUFFIXES = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}


def command_line(ctx: typer.Context) -> str:
    """The running command with every option written out (what provenance records)."""
    parts = [ctx.command_path]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or param.param_type_name != "option":
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            if value:
                parts.append(max(param.opts, key=len))
            elif param.secondary_opts:
                parts.append(param.secondary_opts[0])
            continue
        parts += [flag, shlex.quote(str(value))]  # '' stays '' (an empty list is not the default)
    return " ".join(parts)


def int_list(text: str | None, field: str) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"expected comma-separated whole numbers, got {text!r}", field=field) from None
    if any(v <= 0 for v in values):
        raise InputError(f"values must be positive, got {text!r}", field=field)
    return values


def size_list(text: str | None) -> tuple[int, ...]:
    """``4K,64K,1M`` → bytes (K/M/G are powers of 1024; multiples of 4 bytes)."""
    if not text:
        return ()
    out = []
    for item in (v.strip().upper().removesuffix("B") for v in text.split(",") if v.strip()):
        scale = SIZE_SUFFIXES.get(item[-1:], 1)
        number = item[:-1] if item[-1:] in SIZE_SUFFIXES else item
        try:
            value = int(float(number) * scale)
        except ValueError:
            raise InputError(f"not a size: {item!r} (e.g. 4K, 1M, 65536)", field="sizes") from None
        if value < 4 or value % 4:
            raise InputError(f"size {item!r} must be a positive multiple of 4 bytes", field="sizes")
        out.append(value)
    return tuple(sorted(set(out)))


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[label]}"), TimeElapsedColumn(), console=err_console, transient=True)


def _summary(profile, title: str) -> None:  # noqa: ANN001 - Profile
    table = Table(title=title)
    for col in ("layer kind", "shapes", "largest query", "median s at largest"):
        table.add_column(col)
    for kind, timings in profile.layers.items():
        largest = max(timings, key=lambda t: (t.batch == 1, t.tensor_shard == 1, t.query_tokens, t.kv_tokens))
        table.add_row(kind, str(len(timings)), f"{largest.query_tokens}/{largest.kv_tokens} b{largest.batch}",
                      f"{largest.median_s:.4g}")
    out_console.print(table)


def register(app: typer.Typer) -> None:
    prof = typer.Typer(help="Profiles: measure per-layer compute and links, analytic profiles, calibration.",
                       no_args_is_help=True)

    @prof.command("compute")
    def compute(ctx: typer.Context, model: str = typer.Option(..., "--model", help="Preset name or file."),
                device: str = typer.Option("cpu", "--device", help="cpu or cuda (cuda:N)."),
                dtype: str = typer.Option("fp32", "--dtype", help="fp32, bf16 or fp16."),
                resolutions: Optional[str] = typer.Option(None, "--resolutions",
                                                          help="Image sizes, px (default: the preset's and twice it)."),
                max_patches: int = typer.Option(32, "--max-patches", min=1, help="Largest PipeFusion patch count."),
                threads: int = typer.Option(1, "--threads", min=1, help="torch threads (CPU)."),
                batches: str = typer.Option("1,2", "--batches", help="Batch sizes (2: both CFG branches)."),
                tensor_shards: str = typer.Option("1,2,4", "--tensor-shards",
                                                  help="Tensor-parallel widths (kept where they divide the heads)."),
                shards: str = typer.Option("2,4", "--shards", help="Local sequence shards S/N ('' for none)."),
                warmup: int = typer.Option(2, "--warmup", min=0, help="Untimed calls per shape."),
                repeats: int = typer.Option(7, "--repeats", min=1, help="Timed samples per shape."),
                gpu: Optional[str] = typer.Option(None, "--gpu", help="Catalog GPU name (default: from the device)."),
                extras: bool = typer.Option(True, "--extras/--no-extras",
                                            help="Also time the VAE decode and the scheduler step."),
                pass_overhead: Optional[bool] = typer.Option(
                    None, "--pass-overhead/--no-pass-overhead",
                    help="Build the whole model to time its forward overhead (default: tiny presets only)."),
                corun_ranks: int = typer.Option(
                    0, "--corun-ranks", min=0,
                    help="CPU: also time the whole forward on N processes at once against one at a time "
                         "(the slowdown of ranks sharing this host), and with --extras Ring's attention core in a "
                         "loop of its degree's ranks for every degree up to N (its per-call cost with a hop in "
                         "flight; 0: not measured)."),
                output: Path = typer.Option(..., "-o", "--output", help="Profile JSON to write.")) -> None:
        """Time every layer kind of a model, one block at a time, over the shapes plans need."""
        guard_outputs({"-o": output}, {"--model": model})
        from profiles.catalog.models import load_model
        from profiler.compute import ComputeSettings, profile_compute

        preset = load_model(model)
        if dtype not in ("fp32", "bf16", "fp16"):
            raise InputError(f"unknown dtype {dtype!r}; choices: fp32, bf16, fp16", field="dtype")
        if not (device == "cpu" or device.startswith("cuda")):
            raise InputError(f"unknown device {device!r}; choices: cpu, cuda, cuda:N", field="device")
        res = int_list(resolutions, "resolutions")
        for r in res:
            preset.latent_size(r, r)
        if gpu is not None:
            from profiles.catalog.gpus import get_gpu

            get_gpu(gpu)
        batch_sizes, widths = int_list(batches, "batches"), int_list(tensor_shards, "tensor-shards")
        if not batch_sizes or not widths:
            raise InputError("--batches and --tensor-shards need at least one value", field="batches")
        settings = ComputeSettings(device=device, dtype=dtype, resolutions_px=res, max_patches=max_patches,
                                   batches=batch_sizes, tensor_shards=widths, shards=int_list(shards, "shards"),
                                   threads=threads, warmup=warmup, repeats=repeats, gpu=gpu,
                                   extras=extras, pass_overhead=pass_overhead, corun_ranks=corun_ranks)
        if corun_ranks == 1 or (corun_ranks and device != "cpu"):
            raise InputError("--corun-ranks needs 2 or more CPU processes (--device cpu)", field="corun-ranks")
        command = command_line(ctx)
        with _progress() as bar:
            task = bar.add_task(f"profiling {preset.name}", total=None, label="building")

            def report(total: int, label: str) -> None:
                if total:
                    bar.update(task, total=total, label=label)
                else:
                    bar.update(task, advance=1, label=label)
            profile = profile_compute(preset, settings, command=command, progress=report)
        write_model_json(output, profile)
        _summary(profile, f"{preset.name} on {profile.device} ({profile.device_name}) → {output}")

    @prof.command("links")
    def links(ctx: typer.Context, nprocs: int = typer.Option(2, "--nprocs", min=2, help="Processes (ranks) to start."),
              topology: str = typer.Option("cpu2", "--topology", help="Topology the ranks sit on (rank i → device i)."),
              all_pairs: bool = typer.Option(False, "--all-pairs", help="Measure every rank pair, not one per route class."),
              sizes: Optional[str] = typer.Option(None, "--sizes", help="Message sizes, e.g. 4K,64K,1M,16M."),
              device: str = typer.Option("cpu", "--device", help="cpu (gloo) or cuda (NCCL)."),
              repeats: int = typer.Option(7, "--repeats", min=1),
              collectives: bool = typer.Option(True, "--collectives/--no-collectives",
                                               help="Also time all_gather, all_to_all, all_reduce."),
              in_loop: bool = typer.Option(False, "--in-loop",
                                           help="CPU: also time each collective between slices of compute, as the "
                                                "runtime calls them (the per-call cost beyond back-to-back calls)."),
              output: Path = typer.Option(..., "-o", "--output", help="Links profile JSON to write."),
              write_topology: Optional[Path] = typer.Option(None, "--write-topology",
                                                            help="Also write the topology with measured link figures.")) -> None:
        """Measure point-to-point and collective times per route class; fit latency and bandwidth."""
        guard_outputs({"-o": output, "--write-topology": write_topology}, {"--topology": topology})
        import yaml

        from profiler.links import LinkSettings, links_profile, measure_links, measured_topology, rank_plan
        from profiles.topology.graph import load_cluster

        if device not in ("cpu", "cuda"):
            raise InputError(f"unknown device {device!r}; choices: cpu, cuda", field="device")
        cluster = load_cluster(topology)
        settings = LinkSettings(nprocs=nprocs, device=device, sizes_bytes=size_list(sizes), all_pairs=all_pairs,
                                collectives=collectives, repeats=repeats, in_loop=in_loop)
        rank_plan(cluster, settings)  # bad --nprocs fails here, before anything starts
        command = command_line(ctx)
        err_console.print(f"measuring links with {nprocs} ranks on {cluster.topology.name} …")
        raw = measure_links(cluster, settings)
        if raw is None:  # a torchrun rank other than 0
            return
        profile = links_profile(cluster, settings, raw, command=command)
        topo = measured_topology(cluster, profile, command=command) if write_topology is not None else None
        write_outputs([(output, profile), (write_topology, topo and yaml.safe_dump(
            topo.model_dump(mode="json", exclude_defaults=False), sort_keys=False))])  # both or neither
        table = Table(title=f"links on {cluster.topology.name} ({nprocs} ranks, {profile.software.distributed_backend})"
                            f" → {output}")
        for col in ("route class", "pairs", "latency µs", "bandwidth GB/s"):
            table.add_column(col)
        for fit in profile.links:
            table.add_row(fit.route_class, ", ".join(fit.pairs), f"{fit.latency_us:.1f}", f"{fit.bandwidth_gb_s:.3f}")
        for curve in profile.collectives:
            table.add_row(f"{curve.op} ×{curve.group_size}", "", f"{curve.latency_us:.1f}", f"{curve.bandwidth_gb_s:.3f}")
        out_console.print(table)

    @prof.command("overlap")
    def overlap(ctx: typer.Context, nprocs: int = typer.Option(2, "--nprocs", min=2, help="Processes (ranks) to start."),
                topology: str = typer.Option("cpu2", "--topology", help="Topology the ranks sit on (rank i → device i)."),
                device: str = typer.Option("cpu", "--device", help="cpu (gloo) or cuda (NCCL)."),
                repeats: int = typer.Option(5, "--repeats", min=1),
                compute_s: float = typer.Option(0.0, "--compute-s", min=0.0,
                                                help="Length of the compute loop (0: 0.2 s on CPU, 0.05 s on CUDA)."),
                write_topology: Optional[Path] = typer.Option(None, "--write-topology",
                                                              help="Write the topology with the measured overlap."),
                json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """Measure how much of an asynchronous all-gather hides behind matmuls (the topology's overlap_efficiency)."""
        from profiles.cli_support import print_json
        from profiler.overlap import OverlapSettings, measure_overlap, with_measured_overlap
        from profiles.topology.graph import load_cluster
        from profiles.topology.smi_import import topology_yaml

        if device not in ("cpu", "cuda"):
            raise InputError(f"unknown device {device!r}; choices: cpu, cuda", field="--device")
        cluster = load_cluster(topology)
        if nprocs > len(cluster.devices):
            raise InputError(f"{nprocs} processes but the topology has {len(cluster.devices)} devices",
                             field="--nprocs")
        guard_outputs({"--write-topology": write_topology}, {"--topology": topology})
        command = command_line(ctx)
        err_console.print(f"measuring overlap with {nprocs} ranks on {cluster.topology.name} …")
        result = measure_overlap(OverlapSettings(nprocs=nprocs, device=device, repeats=repeats, compute_s=compute_s))
        if result is None:  # a torchrun rank other than 0
            return
        if result["lower_bound"]:
            err_console.print("pfplan: warning: the all-gather outlasted the compute loop and hid it entirely: "
                              f"{result['overlap_efficiency']:.3f} is a lower bound; rerun with a longer --compute-s",
                              markup=False)
        if write_topology is not None:
            write_atomic(write_topology, topology_yaml(with_measured_overlap(cluster.topology, result,
                                                                             command=command)))
        if json_out:
            print_json(result)
            return
        out_console.print(f"compute {result['median_compute_s']:.4g} s, all-gather ({result['bytes_per_rank']} B per "
                          f"rank) {result['median_comm_s']:.4g} s, both {result['median_both_s']:.4g} s → "
                          f"overlap_efficiency {result['overlap_efficiency']:.3f}"
                          + (f"; wrote {write_topology}" if write_topology else ""), markup=False)

    @prof.command("analytic")
    def analytic(ctx: typer.Context, gpu: str = typer.Option(..., "--gpu", help="Catalog GPU name (pfplan gpus)."),
                 model: str = typer.Option(..., "--model", help="Preset name or file."),
                 resolutions: Optional[str] = typer.Option(None, "--resolutions",
                                                           help="Image sizes, px (default: half, 1× and 2× the preset's)."),
                 max_patches: int = typer.Option(32, "--max-patches", min=1),
                 dtype: str = typer.Option("bf16", "--dtype", help="fp32, bf16 or fp16 (bytes per weight)."),
                 output: Path = typer.Option(..., "-o", "--output")) -> None:
        """Write a profile from the data-sheet roofline (provenance: analytic)."""
        guard_outputs({"-o": output}, {"--model": model})
        from profiles.catalog.gpus import get_gpu
        from profiles.catalog.models import load_model
        from profiles.costs.profile_derive import analytic_profile

        preset = load_model(model)
        get_gpu(gpu)
        res = int_list(resolutions, "resolutions")
        for r in res:
            preset.latent_size(r, r)
        profile = analytic_profile(preset, gpu, resolutions_px=res, max_patches=max_patches, dtype=dtype,
                                   command=command_line(ctx))
        write_model_json(output, profile)
        _summary(profile, f"{preset.name} on {gpu} (analytic) → {output}")

    @prof.command("calibrate")
    def calibrate_cmd(ctx: typer.Context, profile: str = typer.Option(..., "--profile", help="Profile file or shipped name."),
                      model: str = typer.Option(..., "--model"),
                      resolution: int = typer.Option(..., "--resolution", help="Image size of the measured run, px."),
                      steps: int = typer.Option(..., "--steps", min=1),
                      measured_serial: float = typer.Option(..., "--measured-serial",
                                                            help="Measured serial latency, seconds."),
                      source: str = typer.Option("", "--source", help="Where the measurement comes from."),
                      output: Path = typer.Option(..., "-o", "--output")) -> None:
        """Scale a profile so its serial prediction matches one measured run."""
        guard_outputs({"-o": output}, {"--profile": profile, "--model": model})
        from profiles.catalog.models import load_model
        from profiles.costs.profile_derive import calibrate
        from profiles.costs.profile_format import load_profile, profile_path

        preset = load_model(model)
        preset.latent_size(resolution, resolution)
        path = profile_path(profile)
        with warnings_as_lines():
            calibrated = calibrate(load_profile(path), preset, file=str(path), resolution_px=resolution, steps=steps,
                                   measured_serial_s=measured_serial, command=command_line(ctx), source=source)
        write_model_json(output, calibrated)
        record = calibrated.provenance.calibration
        out_console.print(f"{output}: ×{record.factor:.4g} (predicted {record.predicted_serial_s:.4g} s, "
                          f"measured {record.measured_serial_s:.4g} s)", markup=False)

    @prof.command("show")
    def show(profile: str = typer.Argument(..., help="Profile file or shipped name ('list': shipped names)."),
             json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON.")) -> None:
        """Summarise a profile: model, device, software stack, provenance, layer kinds, links."""
        from profiles.cli_support import print_json
        from profiles.costs.profile_format import load_profile, shipped_profiles

        if profile == "list":
            names = shipped_profiles()
            if json_out:
                print_json(names)
            else:
                out_console.print("\n".join(names), markup=False)
            return
        p = load_profile(profile)
        summary = {"model": p.model, "device": p.device, "device_name": p.device_name,
                   "software": p.software.model_dump(exclude_none=True), "provenance": p.provenance.kind,
                   "command": p.provenance.command, "created_at": p.provenance.created_at,
                   "calibration_factor": p.provenance.calibration.factor if p.provenance.calibration else None,
                   "layers": {k: len(v) for k, v in p.layers.items()},
                   "links": {f.route_class: {"latency_us": f.latency_us, "bandwidth_gb_s": f.bandwidth_gb_s}
                             for f in p.links},
                   "vae_decode": [v.model_dump() for v in p.vae_decode],
                   "scheduler_step": {t.query_tokens: t.median_s for t in p.scheduler_step},
                   "pass_overhead": [o.model_dump() for o in p.pass_overhead]}
        if json_out:
            print_json(summary)
            return
        lines = [f"{profile}: {p.model or 'links'} on {p.device} ({p.device_name}), {p.provenance.kind} "
                 f"{p.provenance.created_at}", f"  command: {p.provenance.command}",
                 "  software: " + ", ".join(f"{k} {v}" for k, v in summary["software"].items())]
        if p.provenance.calibration:
            c = p.provenance.calibration
            lines.append(f"  calibrated ×{c.factor:.4g} to {c.measured_serial_s:g} s ({c.source or 'no source given'})")
        for v in p.vae_decode:
            lines.append(f"  vae decode {v.height_px}×{v.width_px}: {v.median_s:.4g} s warm, "
                         f"{v.first_s if v.first_s is not None else float('nan'):.4g} s first call")
        if p.scheduler_step:
            lines.append("  scheduler step: " + ", ".join(f"{t.query_tokens} tokens {t.median_s * 1e6:.0f} µs"
                                                          for t in p.scheduler_step))
        for o in p.pass_overhead:
            step = f"{o.step_s * 1e3:.3g} ms" if o.step_s is not None else "not measured"
            lines.append(f"  overhead batch {o.batch}: {o.block_s * 1e6:.3g} µs per block, runtime loop {step} per "
                         f"step, first pass {o.first_pass_s * 1e3:.3g} ms")
            if o.patch_passes:
                lines.append("    PipeFusion loop per patch pass: " + ", ".join(
                    f"{pp.patches} patches {pp.pass_s * 1e3:.3g} ms" for pp in o.patch_passes))
        out_console.print("\n".join(lines), markup=False)
        if p.layers:
            _summary(p, "layers")
        for f in p.links:
            out_console.print(f"  {f.route_class}: {f.latency_us:.1f} µs + bytes / {f.bandwidth_gb_s:.3f} GB/s",
                              markup=False)

    app.add_typer(prof, name="profile")
