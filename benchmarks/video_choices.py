"""The search's choice for Wan 2.1 14B, 1280×720, 81 frames, on three clusters, written into docs/video.md.

Runs ``planner.search.search`` (the library behind ``pfplan search``; the CLI takes one
square ``--resolution``, 720p is 1280×720) with the analytic roofline cost model of each
cluster's GPU, 50 steps, warm-up ≥ 1, and prints the best plan, the runner-up of another
shape, the fastest plan that was refused for memory, and the serial baseline. Run:
``python -m benchmarks.video_choices`` (about a minute; the page's table is between markers).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from planner.job import load_job
from planner.search import SearchSettings, search

DOC = Path(__file__).resolve().parents[1] / "docs" / "video.md"
BEGIN, END = "<!-- video_choices:begin -->", "<!-- video_choices:end -->"
MODEL, HEIGHT, WIDTH, FRAMES, STEPS = "wan2.1-t2v-14b", 720, 1280, 81, 50
TOPOLOGIES = ("pcie8", "h100-nvlink8", "l40-2node")


def choice(topology: str) -> list[str]:
    cluster, model, cost = load_job(topology, MODEL, None, FRAMES)
    result = search(model, cluster, cost, height_px=HEIGHT, width_px=WIDTH, steps=STEPS,
                    settings=SearchSettings(simulate_top=10), topology_name=topology)
    ranked = [c for c in result.ranked if c.simulated]
    best = ranked[0]
    other = next((c for c in ranked if c.plan.degrees.label() != best.plan.degrees.label()), None)
    gib = 2 ** 30
    lines = [f"### {topology} ({len(cluster.devices)} × {cost.name})", "",
             f"- tokens: {model.image_tokens(HEIGHT, WIDTH)} ({model.latent_frames()} latent frames × "
             f"{model.token_grid(HEIGHT, WIDTH)[0] // model.latent_frames()} × {model.token_grid(HEIGHT, WIDTH)[1]})",
             f"- serial baseline: {result.baseline_latency_s:.4g} s" if result.baseline_latency_s else
             "- serial baseline: does not fit one device",
             f"- **choice: {best.plan.degrees.label()}**, patches M={best.plan.patches}, warm-up "
             f"W={best.plan.warmup_steps}, placement {best.placement_name}: predicted {best.latency_s:.4g} s, "
             f"peak {best.peak_memory_bytes / gib:.1f} GiB of {best.capacity_bytes / gib:.0f} GiB on "
             f"{best.peak_device}" + (f"; pfrun: {best.runnable_reason}" if best.runnable_reason else "")]
    if other is not None:
        lines.append(f"- next other shape: {other.plan.degrees.label()} (M={other.plan.patches}) "
                     f"{other.latency_s:.4g} s — {other.lost_because or 'slower'}")
    refused = [r for r in result.rejected if "does not fit" in r.reason]
    if refused:
        lines.append(f"- refused for memory: {len(refused)} shapes, e.g. {refused[0].plan.degrees.label()}: "
                     f"{refused[0].reason}")
    lines.append(f"- counts: {result.counts}")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Print, do not write docs/video.md.")
    args = parser.parse_args(argv)
    body = "\n".join(line for topology in TOPOLOGIES for line in choice(topology))
    if args.check:
        print(body)
        return 0
    text = DOC.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
