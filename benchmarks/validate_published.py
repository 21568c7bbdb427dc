"""Replay the PipeFusion paper's published PixArt-α measurements in the simulator; write docs/validation.md.

Run from the repository root::

    python benchmarks/validate_published.py            # writes docs/validation.md
    python benchmarks/validate_published.py --stdout   # prints it instead

The published figures below are copied from REFERENCES §2 (read off the paper's plots):
they are the reference the simulation is checked against, never an input to it. The
simulation uses the shipped topologies and the *uncalibrated* analytic cost model of each
GPU (profiles/analytic.py defaults), so this measures the model as shipped.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiles.costs import cost_model_for  # noqa: E402
from benchmarks._doc_sections import replace_section  # noqa: E402
from profiles.models import load_model  # noqa: E402
from profiles.topology import Communication  # noqa: E402
from profiles.topology_graph import ClusterGraph, load_cluster  # noqa: E402
from simulator.engine import simulate  # noqa: E402
from simulator.plan import ParallelPlan, parse_parallel_spec, validate  # noqa: E402

COMMAND = "python benchmarks/validate_published.py"
CALIBRATED_PROFILE = "pixart-alpha-a100-pcie-calibrated"
TITLE = "# Validation against published measurements"
BEGIN, END = "<!-- validate_published:begin -->", "<!-- validate_published:end -->"
"""This script owns the text between the markers of docs/validation.md; the rest is other runs'."""
PUBLISHED_A100 = {  # seconds, PixArt-α, 20 steps, 4×A100 PCIe (REFERENCES §2)
    1024: {"1 GPU": 2.085, "PipeFusion": 0.866, "DistriFusion": 2.331, "Ulysses": 1.741, "TP": 4.915},
    2048: {"1 GPU": 16.22, "PipeFusion": 5.37, "DistriFusion": 9.622, "Ulysses": 7.932, "TP": 19.45},
    4096: {"1 GPU": 183.6, "PipeFusion": 60.15, "DistriFusion": 68.35, "Ulysses": 59.01, "TP": 105.7},
}
PUBLISHED_L20_SWEEP = {2: 3.13, 4: 1.99, 8: 1.54, 16: 1.36, 32: 2.43}  # PipeFusion N=8, PixArt 1024, L20 PCIe
PATCH_CHOICES = (2, 4, 8, 16, 32)
PUBLISHED_FLUX_H100 = {  # seconds, Flux.1-dev, 28 steps, 1024 px, 4×H100 NVLink, eager (xDiT; REFERENCES §2)
    "1 GPU": ("serial=1", 6.71), "Ulysses-2": ("ulysses=2", 4.38), "Ring-2": ("ring=2", 5.31),
    "Ulysses-2×Ring-2": ("ulysses=2,ring=2", 5.19), "Ulysses-4": ("ulysses=4", 4.24), "Ring-4": ("ring=4", 5.11),
}
NOTES = """
## Where and why it disagrees (read with the tables above)

What the model charges (docs/simulator.md): Ring attention's K/V passes hide only behind
the attention share of the compute, times (r−1)/r; the analytic roofline's efficiency
falls with the work per call (tokens ÷ tensor shard); DistriFusion's first step is
synchronous; a topology's `communication` block scales every transfer by its bandwidth
efficiency and lets overlapped transfers hide only its overlap efficiency of their time
(the rest runs after the compute, or holds a PipeFusion sender). The constants of the
analytic model were not tuned against these tables; the three calibrated numbers were
fitted by the commands named above, on the rows named above, and PipeFusion's rows are
not among them.

- **Uncalibrated, every parallel method is too fast, the communication-bound ones most**
  (DistriFusion 0.32-0.50 of published, TP 0.38-0.54, Ulysses 0.52-0.70, PipeFusion
  0.56-0.66, 1 GPU 0.69-0.73), so DistriFusion wins at 2048 and 4096 px where the paper
  has it third. Data-sheet links at 22 GB/s with perfect overlap are far from what NCCL
  achieved on that box.
- **Calibrated, one bandwidth figure explains TP and Ulysses together** (0.87-1.15 of
  published at every size): NCCL's collectives on that box ran at about 39 % of the
  22 GB/s PCIe Gen4 figure, about 8.6 GB/s, which the TP rows alone (8.5 GB/s implied by
  their excess over compute) and the Ulysses rows alone (about 9.7 GB/s) also say.
- **DistriFusion's all-gathers barely overlapped** (overlap efficiency 0.165): the paper's
  DistriFusion times are close to compute plus the whole gather time at that bandwidth,
  which is why it is slower than one GPU at 1024 px. Candidate causes, none measured here:
  NCCL's copy kernels wait for SMs behind full-GPU compute kernels, share memory bandwidth
  with them, and every layer synchronises on its buffers. The same efficiency applies to
  Ring's K/V passes and to PipeFusion's sends (whose bytes are small), so no strategy is
  exempt from it.
- **PipeFusion, held out, lands at 0.83-0.96 of published** and wins at 1024 and
  2048 px as published (Kendall τ +1.00 for the four methods at both sizes). At 4096 px
  it is simulated 15 % ahead of Ulysses where the paper has Ulysses 2 % ahead: a near tie
  there, and the calibrated Ulysses rows are the worst fitted (1.14-1.15 at 2048 and
  4096 px), since one bandwidth figure cannot fit the TP and Ulysses rows exactly.
- **Ring (no published figure) is slower than PipeFusion on this box at every size**
  once its K/V passes hide only 16.5 % of their time.
- **Patch sweep** (`l20x8`, uncalibrated compute, the borrowed a100-pcie4 communication):
  the U shape is reproduced (too few patches leave the 8-stage pipeline idle, too many make
  small, inefficient layer calls), but the simulated optimum is M = 8 where the paper's is
  M = 16: the roofline's half-efficiency point (256 tokens per call, a guess) penalises
  the 256-token patches of M = 16 too early, and real per-patch overheads (Python, kernel
  launches) grow faster than the 40 µs floor at M = 32. Calibrating
  `half_efficiency_tokens` and `layer_floor_us` against a measured patch sweep is how to
  close this gap.
- **Flux on 4×H100: the simulated speed-ups are too high and Ring is on the wrong side of
  Ulysses.** Published, Ulysses beats Ring at every degree (Ulysses-4 4.24 s, Ring-4
  5.11 s) and 4 GPUs give only 1.3-1.6×; simulated, 2.5-2.7×, with Ring-4 first.
  Calibrating the communication does not explain it: the fit asks for NVLink at 29 GB/s,
  which no NVLink runs at, and still leaves a 0.18 rms log error (Ulysses-2 predicted
  slower than Ulysses-4 measured by far more than published). So `h100-nvlink8` ships
  uncalibrated. What the model lacks there is on the compute side: a real ring rank makes r
  flash-attention calls of q/r × k/r and merges their partial outputs with an
  online-softmax correction; sequence parallelism here replicates the 512 text tokens
  (of 4608) on every rank; and per-call overheads of the smaller shards in eager PyTorch
  are not in the roofline. A measured Flux profile on H100 (`pfplan profile compute`) is
  how to check.
"""
SPECS = {"1 GPU": "serial=1", "DistriFusion": "distrifusion=4,warmup=1", "Ulysses": "ulysses=4", "TP": "tensor=4"}
PARALLEL = ("PipeFusion", "DistriFusion", "Ulysses", "TP")


def run(model, cluster, cost, res: int, spec: str, steps: int = 20) -> float:
    plan = ParallelPlan(model=model.name, height_px=res, width_px=res, steps=steps, **parse_parallel_spec(spec))
    validate(plan, model, cluster)
    return simulate(plan, model, cluster, cost).latency_s


def kendall_tau(a: dict[str, float], b: dict[str, float]) -> float:
    keys = list(a)
    score = 0
    for x, y in combinations(keys, 2):
        score += 1 if (a[x] - a[y]) * (b[x] - b[y]) > 0 else -1
    return score / (len(keys) * (len(keys) - 1) / 2)


def order(values: dict[str, float]) -> str:
    return " < ".join(k for k, _ in sorted(values.items(), key=lambda kv: kv[1]))


def flux_section() -> list[str]:
    """xDiT's Flux.1-dev 4×H100 figures against the simulation on the first 4 GPUs of `h100-nvlink8`."""
    flux, h100 = load_model("flux-dev"), load_cluster("h100-nvlink8")
    cost = cost_model_for(flux, "h100-sxm")
    simulated = {name: run(flux, h100, cost, 1024, spec, steps=28) for name, (spec, _) in PUBLISHED_FLUX_H100.items()}
    published = {name: pub for name, (_, pub) in PUBLISHED_FLUX_H100.items()}
    lines = ["", "## Flux.1-dev 1024 px, 28 steps, 4×H100 NVLink (xDiT), on the first 4 GPUs of `h100-nvlink8`", "",
             f"Cost model `{cost.name}`.", "",
             "| method | published s | simulated s | sim / pub | speed-up vs 1 GPU (pub / sim) |",
             "|---|---|---|---|---|"]
    for name, pub in published.items():
        sim = simulated[name]
        lines.append(f"| {name} | {pub:.2f} | {sim:.3f} | {sim / pub:.2f} | "
                     f"{published['1 GPU'] / pub:.2f} / {simulated['1 GPU'] / sim:.2f} |")
    pub_par = {k: v for k, v in published.items() if k != "1 GPU"}
    sim_par = {k: v for k, v in simulated.items() if k != "1 GPU"}
    lines += ["", f"Order, fastest first. Published: {order(pub_par)}. Simulated: {order(sim_par)} "
              f"(Kendall τ {kendall_tau(pub_par, sim_par):+.2f}).", ""]
    return lines + flux_calibration_attempt(flux, h100)


def flux_calibration_attempt(flux, h100) -> list[str]:
    """Fit h100-nvlink8's communication to the same Flux runs, to see whether transfers explain them."""
    from planner.topology_calibration import calibrate_topology
    from profiles.measured_runs import load_measured_runs

    runs, _ = load_measured_runs("flux-dev-h100-nvlink4-published")
    cost = cost_model_for(flux, "h100-sxm", "flux-dev-h100-sxm-calibrated")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # profile-range notes: the analytic fallback is the point here
        fit = calibrate_topology(h100.topology, flux, cost, runs, file="flux-dev-h100-nvlink4-published",
                                 source="benchmarks/validate_published.py")
    comm = fit.communication
    nvlink = h100.route(h100.devices[0], h100.devices[1]).bottleneck_gb_s
    lines = ["Can the transfers explain these runs? `pfplan topology calibrate --topology h100-nvlink8",
             "--measurements flux-dev-h100-nvlink4-published --profile flux-dev-h100-sxm-calibrated` fits",
             f"bandwidth efficiency {comm.bandwidth_efficiency:g} (NVLink at {comm.bandwidth_efficiency * nvlink:.0f} "
             f"of {nvlink:g} GB/s) and overlap efficiency {comm.overlap_efficiency:g}; rms log error",
             f"{fit.rms_log_error(False):.3f} → {fit.rms_log_error(True):.3f}:", "",
             "| run | published s | fitted s |", "|---|---|---|"]
    lines += [f"| {c.run.name()} | {c.run.latency_s:.2f} | {c.after_s:.2f} |" for c in fit.checks]
    return lines + [""]


def a100_section(model, cluster, cost, title: str, intro: list[str]) -> list[str]:
    """Every published 4×A100 PCIe row against the simulation, and the ranking of the four methods."""
    lines = ["", f"## {title}", "", *intro, "",
             "| res | method | published s | simulated s | sim / pub | speed-up vs 1 GPU (pub / sim) |",
             "|---|---|---|---|---|---|"]
    summary = []
    for res, published in PUBLISHED_A100.items():
        simulated = {name: run(model, cluster, cost, res, spec) for name, spec in SPECS.items()}
        by_m = {m: run(model, cluster, cost, res, f"pipefusion=4,patches={m},warmup=1") for m in PATCH_CHOICES}
        best_m = min(by_m, key=by_m.get)
        simulated["PipeFusion"] = by_m[best_m]
        for name in ("1 GPU", *PARALLEL):
            label = f"{name} (M={best_m})" if name == "PipeFusion" else name
            pub, sim = published[name], simulated[name]
            lines.append(f"| {res} | {label} | {pub:.3f} | {sim:.3f} | {sim / pub:.2f} | "
                         f"{published['1 GPU'] / pub:.2f} / {simulated['1 GPU'] / sim:.2f} |")
        ring = run(model, cluster, cost, res, "ring=4")
        lines.append(f"| {res} | Ring-4 (not published) | - | {ring:.3f} | - | - / {simulated['1 GPU'] / ring:.2f} |")
        pub_par = {k: published[k] for k in PARALLEL}
        sim_par = {k: simulated[k] for k in PARALLEL}
        summary.append((res, order(pub_par), order(sim_par), kendall_tau(pub_par, sim_par),
                        min(pub_par, key=pub_par.get) == min(sim_par, key=sim_par.get)))
    lines += ["", "Ranking of the four parallel methods, fastest first:", "",
              "| res | published | simulated | Kendall τ | same winner |", "|---|---|---|---|---|"]
    for res, pub, sim, tau, top in summary:
        lines.append(f"| {res} | {pub} | {sim} | {tau:+.2f} | {'yes' if top else 'no'} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdout", action="store_true")
    args = parser.parse_args()
    model = load_model("pixart-alpha")
    shipped = load_cluster("a100-pcie4")
    ideal = ClusterGraph(shipped.topology.model_copy(update={"communication": Communication()}))
    analytic = cost_model_for(model, "a100-pcie")
    calibrated = cost_model_for(model, "a100-pcie", CALIBRATED_PROFILE)
    comm = shipped.topology.communication
    lines = [f"Generated by `{COMMAND}` (the script holds the published figures, copied from",
             "REFERENCES §2; the simulated ones come from `simulate()`). PixArt-α, 20 steps, seconds.",
             "PipeFusion: 4 stages, W = 1, the best M of " + ", ".join(map(str, PATCH_CHOICES))
             + " as simulated. DistriFusion: 4 devices, 1 synchronous step. Ulysses, TP: degree 4."]
    lines += a100_section(model, ideal, analytic, "4×A100 PCIe, uncalibrated", [
        f"Data sheets only: the analytic cost model `{analytic.name}` and `a100-pcie4`'s links at",
        "full speed with perfect overlap (communication efficiencies reset to 1). What the tools",
        "predict for a box nobody has measured."])
    lines += a100_section(model, shipped, calibrated, "4×A100 PCIe, calibrated (PipeFusion held out)", [
        f"Compute: `{CALIBRATED_PROFILE}` (the analytic model scaled by one factor to the",
        "published 1-GPU time at 1024 px). Communication: the shipped `a100-pcie4`, whose",
        f"bandwidth efficiency {comm.bandwidth_efficiency:g} and overlap efficiency {comm.overlap_efficiency:g} "
        "were fitted by `pfplan topology calibrate`",
        "to the published TP and Ulysses runs (bandwidth) and DistriFusion runs (overlap):",
        "`profiles/data/measurements/pixart-alpha-a100-pcie4-published.yaml`. No PipeFusion",
        "figure went into any of the three numbers, so PipeFusion's rows and rank are predictions."])
    l20 = load_cluster("l20x8")
    l20_cost = cost_model_for(model, "l20")
    sweep = {m: run(model, l20, l20_cost, 1024, f"pipefusion=8,patches={m},warmup=1") for m in PUBLISHED_L20_SWEEP}
    lines += ["", "## Patch-count sweep: PipeFusion N=8 on 8×L20 PCIe (`l20x8`), PixArt-α 1024 px", "",
              f"Cost model `{l20_cost.name}`.", "", "| M | published s | simulated s | sim / pub |", "|---|---|---|---|"]
    for m, pub in PUBLISHED_L20_SWEEP.items():
        lines.append(f"| {m} | {pub:.2f} | {sweep[m]:.3f} | {sweep[m] / pub:.2f} |")
    lines += ["", f"Best M: published {min(PUBLISHED_L20_SWEEP, key=PUBLISHED_L20_SWEEP.get)}, "
              f"simulated {min(sweep, key=sweep.get)}.", ""]
    lines += flux_section()
    lines += [NOTES.strip(), ""]
    text = "\n".join(lines)
    if args.stdout:
        sys.stdout.write(text)
    else:
        replace_section(ROOT / "docs" / "validation.md", BEGIN, END, f"{BEGIN}\n{text}\n{END}", title=TITLE)
        print(f"wrote {ROOT / 'docs' / 'validation.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
