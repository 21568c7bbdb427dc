"""Benchmark: how far each strategy's pfrun latent is from serial's, per family, on 2 and 4 CPU ranks.

Why: issue 11's promise is that every executor is exact against serial (fresh strategies to
float32 tolerance, stale ones exactly with warm-up = steps); this table is the evidence, one
cell per strategy × family, rerun whenever an executor lands. Each cell runs the strategy at
degree 2 (PipeFusion with 2 patches), and the composed shapes of :data:`HYBRIDS` on 4 ranks
(USP; PipeFusion × Ulysses / × Ring), on the family's tiny preset, 128 px, T steps, through the
real launcher (gloo), and reports the max abs difference of the latent from the serial run
(replica 0 for data parallel). Stale strategies show W = T (must be 0 or float noise) and,
with W = 1, the difference and the PSNR of the decoded image (of the latent, marked "latent",
for a tiny preset without a VAE: wan-tiny, hunyuan-video-tiny, flux2-tiny; peak = the serial latent's max − min, so the figure
is not comparable with the image PSNRs). Cells pfrun refuses say why
(``simulator.runnable.unrunnable_reason``); cells the plan rules refuse say that.

    python -m benchmarks.runtime_exactness [--steps 2] [--stdout-only]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from benchmarks._doc_sections import publish
from profiles.catalog.models import load_model
from runtime.run import compare, execute, job_for
from simulator.degree_rules import needs_warmup
from simulator.plan import ParallelPlan, violations
from simulator.runnable import unrunnable_reason
from simulator.strategies import STRATEGIES

FAMILIES = {"pixart": "pixart-tiny", "sd3": "sd3-tiny", "sd3.5": "sd3.5-tiny", "flux": "flux-tiny", "dit": "dit-tiny",
            "hunyuan": "hunyuan-tiny", "wan": "wan-tiny", "qwen_image": "qwen-image-tiny"}
FAMILIES.update({"hunyuan_video": "hunyuan-video-tiny", "flux2": "flux2-tiny"})  # issue 17's adapters
PX = 128
DOC = Path(__file__).resolve().parents[1] / "docs" / "runtime.md"
BEGIN, END = "<!-- runtime_exactness:begin -->", "<!-- runtime_exactness:end -->"


def run(plan: ParallelPlan, *, decode: bool = False):
    model = load_model(plan.model)
    return execute(job_for(plan, model, decode=decode and model.vae_config is not None, timeout_s=120))


def latent_psnr(latent, reference) -> float:
    """PSNR (dB) of a latent against the reference latent, the reference's max − min as the peak
    (for presets without a VAE, whose image PSNR cannot be computed)."""
    mse = float(((latent - reference).double() ** 2).mean())
    peak = float(reference.max() - reference.min())
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


HYBRIDS: tuple[tuple[dict[str, int], int], ...] = (
    ({"ring": 2, "ulysses": 2}, 1),
    ({STRATEGIES.pipeline.axis: 2, "ulysses": 2}, 2),
    ({STRATEGIES.pipeline.axis: 2, "ring": 2}, 2),
    ({STRATEGIES.pipeline.axis: 2, "ulysses": 2}, 8),
    ({STRATEGIES.pipeline.axis: 2, "ring": 2}, 8),
)
"""Composed shapes on 4 ranks, with their patches: USP, and PipeFusion × Ulysses / × Ring (each
patch split across the stage: with M = 8 at 128 px a patch is one token row, shared by tokens)."""


def label(degrees: dict[str, int], patches: int = 1) -> str:
    return "×".join(f"{a}{n}" for a, n in degrees.items()) + (f", M={patches}" if patches > 2 else "")


def cell(degrees: dict[str, int], preset: str, steps: int, serial, serial_decoded, patches: int | None = None) -> str:
    model = load_model(preset)
    if patches is None:
        patches = 2 if STRATEGIES.pipeline.axis in degrees else 1
    stale = needs_warmup(degrees, patches)
    plan = ParallelPlan(model=preset, height_px=PX, width_px=PX, steps=steps, degrees=degrees, patches=patches,
                        warmup_steps=steps if stale else 0)
    broken = violations(plan, model)
    if broken:
        return f"not a valid plan: {broken[0]}"
    reason = unrunnable_reason(plan.model_copy(update={"warmup_steps": 1 if stale else 0}), model) or \
        unrunnable_reason(plan, model)
    if reason:
        return f"not executed: {reason}"
    exact = compare(run(plan).latents[0], serial.latents[0], None, None)["max_abs_diff"]
    if not stale:
        return f"{exact:.2g}"
    one = run(plan.model_copy(update={"warmup_steps": 1}), decode=True)
    measured = compare(one.latents[0], serial_decoded.latents[0], one.pngs.get(0), serial_decoded.pngs.get(0))
    psnr, what = measured["psnr_db"], ""
    if psnr is None:  # no decoded image (no VAE): the latent's PSNR
        psnr, what = latent_psnr(one.latents[0], serial_decoded.latents[0]), " (latent)"
    return (f"W=T: {exact:.2g}; W=1: {measured['max_abs_diff']:.2g}, "
            f"PSNR{what} {'inf' if psnr == float('inf') else f'{psnr:.1f}'} dB")


def table(steps: int) -> str:
    shapes = [({s.axis: 2}, 2 if s is STRATEGIES.pipeline else 1) for s in STRATEGIES if s.axis] + list(HYBRIDS)
    rows = ["| strategy (degrees) | " + " | ".join(FAMILIES) + " |", "|---|" + "---|" * len(FAMILIES)]
    serials = {f: (run(_serial(p, steps)), run(_serial(p, steps), decode=True)) for f, p in FAMILIES.items()}
    rows.append("| (serial latent's max abs value) | " + " | ".join(
        f"{float(serials[f][0].latents[0].abs().max()):.3g}" for f in FAMILIES) + " |")
    notes: list[str] = []
    for degrees, patches in shapes:
        cells = []
        for family, preset in FAMILIES.items():
            text = cell(degrees, preset, steps, *serials[family], patches=patches)
            head, sep, why = text.partition(": ")
            if head in ("not executed", "not a valid plan"):
                if why not in notes:
                    notes.append(why)
                text = f"{head} [{notes.index(why) + 1}]"
            cells.append(text.replace("|", "/"))
        rows.append(f"| {label(degrees, patches)} | " + " | ".join(cells) + " |")
    return "\n".join(rows + [""] + [f"[{i}] {why}  " for i, why in enumerate(notes, 1)])


def _serial(preset: str, steps: int) -> ParallelPlan:
    return ParallelPlan(model=preset, height_px=PX, width_px=PX, steps=steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--stdout-only", action="store_true")
    args = parser.parse_args(argv)
    section = "\n".join([
        BEGIN,
        f"Max abs difference of the latent from serial, CPU ranks (gloo: 2 for one axis at degree 2, 4 for "
        f"the composed rows), tiny presets at {PX} px, {args.steps} steps; PipeFusion with 2 patches (M=8: 1-row "
        "patches, each split by tokens across the stage's 2 sequence-parallel ranks; 2-row for wan-tiny, whose 2 latent "
        "frames stack 16 rows); stale strategies at W = T and at W = 1 (with "
        "the decoded image's PSNR against serial; wan-tiny, hunyuan-video-tiny and flux2-tiny have no VAE: their PSNR is the latent's, peak = the serial "
        "latent's max − min). Written by "
        f"`python -m benchmarks.runtime_exactness --steps {args.steps}` (part of `make bench`).",
        "",
        table(args.steps),
        END,
    ])
    return publish(section, page=DOC, begin=BEGIN, end=END, stdout_only=args.stdout_only)


if __name__ == "__main__":
    sys.exit(main())
