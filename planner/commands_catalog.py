"""``pfplan models`` and ``pfplan gpus``: what the toolkit knows about models and devices."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from profiles.cli_support import out_console, print_json
from profiles.catalog.gpus import catalog as gpu_catalog
from profiles.loading import write_atomic
from profiles.output_guard import guard_outputs
from profiles.catalog.models import all_presets, load_model, preset_from_diffusers_config

import yaml


def _params(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n:,}"


def register(app: typer.Typer) -> None:
    models = typer.Typer(help="The model catalog: presets and diffusers configs.", invoke_without_command=True,
                         no_args_is_help=False)

    @models.callback()
    def models_list(ctx: typer.Context,
                    json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List the model presets (pfplan models show NAME for one)."""
        if ctx.invoked_subcommand is not None:
            return
        presets = all_presets()
        if json_out:
            print_json([p.summary() for p in presets])
            return
        table = Table(title="Model presets")
        for col in ("name", "family", "blocks", "hidden", "heads×dim", "text tok", "attention", "CFG",
                    "params", "published"):
            table.add_column(col, justify="right" if col in ("hidden", "params", "published", "text tok") else "left")
        for p in presets:
            a = p.arch
            table.add_row(p.name, p.family, " + ".join(f"{g.count} {g.kind}" for g in a.blocks),
                          str(a.hidden_size), f"{a.heads}×{a.head_dim}", str(p.text_tokens), a.attention,
                          "yes" if p.uses_cfg else "no", _params(a.params),
                          _params(int(p.published_params)) if p.published_params else "-")
        out_console.print(table)
        for p in presets:
            if p.arch.duplicated_params:
                out_console.print(f"{p.name}: {p.spec.duplicated_params_note}, "
                                  f"{_params(p.arch.duplicated_params)} more than the original model, whose "
                                  f"published size counts it once ({_params(p.params - p.arch.duplicated_params)})",
                                  markup=False)

    @models.command("show")
    def models_show(name: str = typer.Argument(..., help="Preset name, preset file or diffusers config.json."),
                    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
                    resolution: Optional[int] = typer.Option(None, min=1, help="Also show token counts at this resolution (px).")) -> None:
        """Show one model's dimensions, block kinds and parameter count."""
        preset = load_model(name)
        info = preset.summary()
        if resolution:
            rows, cols = preset.token_grid(resolution, resolution)
            info.update(resolution=resolution, image_tokens=rows * cols, token_rows=rows)
        info["parameters_by_part"] = {"embed": preset.arch.embed_params,
                                      **{g.kind: g.params * g.count for g in preset.arch.blocks},
                                      "final": preset.arch.final_params}
        spec = preset.spec
        info["pipeline"] = spec.pipeline_class
        info["text_encoders"] = [f"{e.kind} ({'pooled, ' if e.pooled_only else ''}{e.max_tokens} tokens)"
                                 for e in spec.text_encoders]
        info["pipeline_guidance_scale"] = spec.guidance.default_scale
        if json_out:
            print_json(info)
            return
        table = Table(title=f"{preset.name}: {preset.description}", show_header=False)
        for key, value in info.items():
            table.add_row(key, str(value))
        out_console.print(table)

    @models.command("import")
    def models_import(config: Path = typer.Argument(..., help="A diffusers transformer config.json."),
                      output: Path = typer.Option(..., "-o", "--output", help="Preset YAML to write."),
                      name: Optional[str] = typer.Option(None, help="Preset name (default: the folder name).")) -> None:
        """Turn a diffusers config.json into an editable preset file."""
        guard_outputs({"-o": output}, {"CONFIG": config})
        preset = preset_from_diffusers_config(config, name=name)
        data = preset.model_dump(mode="json")
        write_atomic(output, yaml.safe_dump(data, sort_keys=False))
        out_console.print(f"wrote {output} ({preset.family}, {_params(preset.params)} parameters); "
                          "check text_tokens and uses_cfg", markup=False)

    app.add_typer(models, name="models")

    @app.command("gpus")
    def gpus(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List the GPU catalog (data-sheet figures, with their source)."""
        specs = gpu_catalog().gpus
        if json_out:
            print_json({name: spec.model_dump() for name, spec in specs.items()})
            return
        table = Table(title="GPU catalog (data sheets; calibrate before trusting)")
        for col in ("name", "TFLOP/s", "memory GB", "mem GB/s", "interconnect", "source"):
            table.add_column(col)
        for name, s in specs.items():
            table.add_row(name, f"{s.peak_tflops:g}", f"{s.memory_gb:g}", f"{s.memory_bandwidth_gb_s:g}",
                          s.interconnect, s.source)
        out_console.print(table)
