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
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiles.costs import cost_model_for  # noqa: E402
from profiles.loading import write_atomic  # noqa: E402
from profiles.models import load_model  # noqa: E402
from profiles.topology_graph import load_cluster  # noqa: E402
from simulator.engine import simulate  # noqa: E402
from simulator.plan import ParallelPlan, parse_parallel_spec, validate  # noqa: E402

COMMAND = "python benchmarks/validate_published.py"
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

What the model charges since the fidelity changes (see docs/simulator.md): Ring
attention's K/V passes hide only behind the attention share of the compute, times
(r−1)/r (`(1−f)·C + max(f·C, comm)` per pass); the analytic roofline's efficiency falls
with the work per call in full-width token equivalents (tokens ÷ tensor shard), so a
tensor-sharded call loses efficiency as a token split does; DistriFusion's first step is
synchronous even without warm-up. None of the constants was tuned against these tables.

- **Absolute times are too low everywhere** (PixArt 1 GPU at 0.69-0.73 of the published
  time, Flux at 0.55). The analytic cost model is an uncalibrated roofline (60 % of peak
  for large matmuls, 40 µs floor per block); eager diffusers on these GPUs evidently runs
  slower. Calibrating the cost model (one `scale`, from one measured serial run) would
  move every compute-bound row by the same factor and leave the rankings as they are.
  The simulator prices neither the VAE decode nor the scheduler step nor the text
  encoder; the published end-to-end times may include some of them.
- **DistriFusion is too fast** (0.32-0.50 of published; it ranks first at 2048 and 4096 px
  where the paper has it third). By design, the simulator overlaps each layer's stale K/V
  all-gather with the whole step's compute (the data are needed only at the next step),
  and charges a collective only its link latency and bandwidth. The published run is
  slower than one GPU at 1024 px, which says the real overlap is poor: NCCL kernels
  compete with compute for SMs and memory bandwidth, every layer synchronises on the
  stale buffers, and A100 PCIe peer traffic through the switch and host bridge runs below
  the 22 GB/s per direction the shipped topology assumes. This is the largest remaining
  modelling error. Modelling contention between overlapped NCCL kernels and compute, or
  profiling the collectives (`pfplan profile links`), is the fix; it is left open.
- **Tensor parallel is last in both rankings**, but the simulator puts it faster than 1 GPU
  from 2048 px while the paper has it slower than 1 GPU at 1024 and 2048 px. Sharded
  calls now lose efficiency like token splits (TP at 1024 px went from 1.832 s to 1.869 s:
  at 4 shards of 4096 tokens the calls are still large), so what remains is the two
  all-reduces per block priced at link speed in round-synchronous ring steps, while real
  NCCL all-reduces over PCIe without NVLink fall short of that.
- **PipeFusion vs Ulysses at 4096 px** is a near tie in both (published 2 % apart,
  simulated 4 % apart, in opposite order): at 4096 px every method is dominated by the
  S² attention compute, which all of them split the same way; the order flips inside the
  model's error. Ring-4 (no published figure) is simulated faster than both at 4096 px:
  attention is ~90 % of the FLOPs there, so 3/4 of it hides the K/V passes completely;
  at 1024 px (attention ~35 %) the ring's passes stick out and it is slower than PipeFusion.
- **Patch sweep**: the U shape is reproduced (too few patches leave the 8-stage pipeline
  idle, too many make small, inefficient layer calls), but the simulated optimum is
  M = 8 where the paper's is M = 16: the roofline's half-efficiency point (256 tokens per
  call, a guess) penalises the 256-token patches of M = 16 too early, and real per-patch
  overheads (Python, kernel launches) grow faster than the 40 µs floor at M = 32.
  Calibrating `half_efficiency_tokens` and `layer_floor_us` against a measured patch
  sweep is how to close this gap.
- **Flux on 4×H100: the simulated speed-ups are too high and Ring is on the wrong side of
  Ulysses.** Published, Ulysses beats Ring at every degree (Ulysses-4 4.24 s, Ring-4
  5.11 s) and 4 GPUs give only 1.3-1.6×; simulated, 2.5-2.7×, with Ring-4 first. Over
  NVLink the ring's K/V passes hide behind the attention in the model, and the model
  prices a ring rank's attention as one call of q/r queries over all keys. A real ring
  rank makes r flash-attention calls of q/r × k/r, merges their partial outputs with an
  online-softmax correction (extra fp32 reads and writes of the output per hop) and
  synchronises on each point-to-point hop; Ulysses makes one call over all keys with h/u
  heads. None of that per-hop overhead is in the cost model, so Ring's measured 20 %
  penalty at degree 2 (5.31 s vs 4.38 s) does not appear. The low published speed-ups
  also say the all-to-alls and the replicated text tokens (512 of 4608, unsplit by
  sequence parallelism here) cost more than link speed suggests; measured link profiles
  and a measured Flux compute profile are how to check.
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
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdout", action="store_true")
    args = parser.parse_args()
    model = load_model("pixart-alpha")
    a100 = load_cluster("a100-pcie4")
    cost = cost_model_for(model, "a100-pcie")
    lines = ["# Validation against published PixArt-α measurements", "",
             f"Generated by `{COMMAND}` (the script holds the published figures, copied from",
             "REFERENCES §2; the simulated ones come from `simulate()` with the shipped `a100-pcie4`",
             f"topology and the uncalibrated analytic cost model `{cost.name}`). 20 steps, seconds.", "",
             "PipeFusion: 4 stages, W = 1, the best M of " + ", ".join(map(str, PATCH_CHOICES))
             + " as simulated. DistriFusion: 4 devices, 1 synchronous step. Ulysses, TP: degree 4.", "",
             "| res | method | published s | simulated s | sim / pub | speed-up vs 1 GPU (pub / sim) |",
             "|---|---|---|---|---|---|"]
    summary = []
    for res, published in PUBLISHED_A100.items():
        simulated = {name: run(model, a100, cost, res, spec) for name, spec in SPECS.items()}
        by_m = {m: run(model, a100, cost, res, f"pipefusion=4,patches={m},warmup=1") for m in PATCH_CHOICES}
        best_m = min(by_m, key=by_m.get)
        simulated["PipeFusion"] = by_m[best_m]
        for name in ("1 GPU", *PARALLEL):
            label = f"{name} (M={best_m})" if name == "PipeFusion" else name
            pub, sim = published[name], simulated[name]
            lines.append(f"| {res} | {label} | {pub:.3f} | {sim:.3f} | {sim / pub:.2f} | "
                         f"{published['1 GPU'] / pub:.2f} / {simulated['1 GPU'] / sim:.2f} |")
        ring = run(model, a100, cost, res, "ring=4")
        lines.append(f"| {res} | Ring-4 (not published) | - | {ring:.3f} | - | - / {simulated['1 GPU'] / ring:.2f} |")
        pub_par = {k: published[k] for k in PARALLEL}
        sim_par = {k: simulated[k] for k in PARALLEL}
        summary.append((res, order(pub_par), order(sim_par), kendall_tau(pub_par, sim_par),
                        min(pub_par, key=pub_par.get) == min(sim_par, key=sim_par.get)))
    lines += ["", "## Ranking of the four parallel methods (fastest first)", "",
              "| res | published | simulated | Kendall τ | same winner |", "|---|---|---|---|---|"]
    for res, pub, sim, tau, top in summary:
        lines.append(f"| {res} | {pub} | {sim} | {tau:+.2f} | {'yes' if top else 'no'} |")
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
        write_atomic(ROOT / "docs" / "validation.md", text)
        print(f"wrote {ROOT / 'docs' / 'validation.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
