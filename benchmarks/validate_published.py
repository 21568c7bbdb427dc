"""Replay published PixArt-α and Flux measurements in the simulator; write docs/validation.md.

Run from the repository root::

    python benchmarks/validate_published.py            # writes its section of docs/validation.md
    python benchmarks/validate_published.py --stdout   # prints it instead
    python benchmarks/validate_published.py --before OLD.md   # adds errors per strategy, OLD's run vs this one

``--before`` takes the ``--stdout`` text of an earlier version of this script (the issue-13
docs were made with the one at the merge base) and tabulates both runs' errors per strategy.

Two kinds of comparison. *Uncalibrated*: data sheets only (analytic cost models, ideal
communication); the published figures are only the reference. *Calibrated*: the shipped
calibrations, which used some published rows as inputs: the PixArt compute profile the
1-GPU time at 1024 px, `a100-pcie4`'s communication the TP, Ulysses and DistriFusion rows
(profiles/data/measurements/pixart-alpha-a100-pcie4-published.yaml, read here so the two
cannot drift). The tables mark which rows were fitted; PipeFusion's were not, and are the
held-out check. Every number in the notes is computed here, not typed in.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiles.costs.selection import cost_model_for  # noqa: E402
from benchmarks._doc_sections import replace_section  # noqa: E402
from profiles.catalog.models import load_model  # noqa: E402
from profiles.topology.format import Communication  # noqa: E402
from profiles.topology.graph import ClusterGraph, load_cluster  # noqa: E402
from simulator.engine import simulate  # noqa: E402
from simulator.plan import ParallelPlan, parse_parallel_spec, validate  # noqa: E402

COMMAND = "python benchmarks/validate_published.py"
CALIBRATED_PROFILE = "pixart-alpha-a100-pcie-calibrated"
TITLE = "# Validation against published measurements"
BEGIN, END = "<!-- validate_published:begin -->", "<!-- validate_published:end -->"
"""This script owns the text between the markers of docs/validation.md; the rest is other runs'."""
MEASUREMENTS = "pixart-alpha-a100-pcie4-published"
METHODS = {"1 GPU": "1 GPU", "TP-4": "TP", "Ulysses-4": "Ulysses", "DistriFusion-4": "DistriFusion"}
"""Labels in the measurements file → method names in the tables."""
PUBLISHED_PIPEFUSION = {1024: 0.866, 2048: 5.37, 4096: 60.15}
"""PipeFusion 4 GPUs, W = 1, PixArt-α, 20 steps, 4×A100 PCIe (docs/references.md §2); held out of every calibration."""
FITTED = {("1 GPU", 1024): "compute fit", ("TP", None): "bandwidth fit", ("Ulysses", None): "bandwidth fit",
          ("DistriFusion", None): "overlap fit", ("PipeFusion", None): "held out"}
"""Which calibrated input each published row was (None: every resolution)."""


def published_a100() -> dict[int, dict[str, float]]:
    """Seconds by resolution and method: the measurements file plus PipeFusion's held-out rows."""
    from profiles.catalog.measured_runs import load_measured_runs

    runs, _ = load_measured_runs(MEASUREMENTS)
    table: dict[int, dict[str, float]] = {}
    for run in runs.runs:
        table.setdefault(run.resolution, {})[METHODS[run.name()]] = run.latency_s
    for res, seconds in PUBLISHED_PIPEFUSION.items():
        table[res]["PipeFusion"] = seconds
    return table


PUBLISHED_L20_SWEEP = {2: 3.13, 4: 1.99, 8: 1.54, 16: 1.36, 32: 2.43}  # PipeFusion N=8, PixArt 1024, L20 PCIe
PATCH_CHOICES = (2, 4, 8, 16, 32)
PUBLISHED_FLUX_H100 = {  # seconds, Flux.1-dev, 28 steps, 1024 px, 4×H100 NVLink, eager (xDiT; docs/references.md §2)
    "1 GPU": ("serial=1", 6.71), "Ulysses-2": ("ulysses=2", 4.38), "Ring-2": ("ring=2", 5.31),
    "Ulysses-2×Ring-2": ("ulysses=2,ring=2", 5.19), "Ulysses-4": ("ulysses=4", 4.24), "Ring-4": ("ring=4", 5.11),
}
def notes(*, raw: dict, cal: dict, comm, link: float, subsets: dict, sensitivity: dict, flux_fit,
          sweep_best: int) -> list[str]:
    """The discussion, with every number taken from this run."""
    gb = comm.bandwidth_efficiency * link
    tp, uly = subsets["TP-4"], subsets["Ulysses-4"]
    flux_bw = flux_fit.communication.bandwidth_efficiency
    h100 = load_cluster("h100-nvlink8")
    nvlink = h100.route(h100.devices[0], h100.devices[1]).bottleneck_gb_s
    tau = cal["tau"]
    text = f"""
## Where and why it disagrees (read with the tables above)

What the model charges (docs/simulator.md): Ring attention's K/V passes hide only behind
the attention share of the compute, times (r−1)/r; the analytic roofline's efficiency
falls with the work per call (tokens ÷ tensor shard); DistriFusion's first step is
synchronous; a topology's `communication` block scales every transfer by its bandwidth
efficiency and lets overlapped transfers hide only its overlap efficiency of their time
(the rest runs after the compute, or holds a PipeFusion sender). The constants of the
analytic model were not tuned against these tables. The three calibrated numbers were
fitted by the commands named above on the rows marked above; PipeFusion's rows are not
among them.

- **Uncalibrated, every parallel method is too fast, the communication-bound ones most**
  (sim / pub: DistriFusion {span(raw["DistriFusion"])}, TP {span(raw["TP"])}, Ulysses
  {span(raw["Ulysses"])}, PipeFusion {span(raw["PipeFusion"])}, 1 GPU {span(raw["1 GPU"])}), so
  the ranking goes wrong where communication decides it. Data-sheet links with perfect
  overlap are far from what NCCL achieved on that box.
- **Calibrated, one bandwidth figure fits TP and Ulysses together only roughly**: the joint
  fit is {comm.bandwidth_efficiency:.3g} of the {link:g} GB/s link ({gb:.1f} GB/s); TP's rows alone
  would give {tp:.3g} ({tp * link:.1f} GB/s), Ulysses' alone {uly:.3g} ({uly * link:.1f} GB/s). The
  calibrated TP rows land at {span(cal["TP"])} of published, Ulysses at {span(cal["Ulysses"])}.
- **DistriFusion's all-gathers barely overlapped** (overlap efficiency {comm.overlap_efficiency:g};
  its calibrated rows at {span(cal["DistriFusion"])}): the paper's DistriFusion times are close to
  compute plus the whole gather time at that bandwidth, which is why it is slower than one
  GPU at 1024 px. Candidate causes, none measured here: NCCL's copy kernels wait for SMs
  behind full-GPU compute kernels, share memory bandwidth with them, and every layer
  synchronises on its buffers. The same efficiency applies to Ring's K/V passes and to
  PipeFusion's sends, so no strategy is exempt from it.
- **What the held-out PipeFusion rows test.** They land at {span(cal["PipeFusion"])} of
  published, and the four methods' order comes out with Kendall τ
  {", ".join(f"{t:+.2f}" for t in tau)} at 1024, 2048 and 4096 px. But three of the four
  methods in that order were fitted, so the order mostly says the fit worked; what is out
  of sample is PipeFusion's place in it and its times. And PipeFusion barely depends on the
  communication: at 1024 px its best plan takes {sensitivity["ideal"]:.3f} s with ideal
  communication, {sensitivity["calibrated"]:.3f} s calibrated, {sensitivity["no overlap"]:.3f} s with no
  overlap at all. So the held-out rows check the compute model (one scale factor from one
  serial run) and the pipeline schedule, not the overlap model. The trend on PCIe follows
  from the alternatives paying for their communication as measured.
- **At 4096 px** the paper has Ulysses 2 % ahead of PipeFusion (a near tie); the calibrated
  simulation has PipeFusion ahead, with Ulysses' rows the worst fitted.
- **Ring** (no published figure) simulates at {span(cal["Ring-4 vs PipeFusion"])} × PipeFusion's
  time on this box once its K/V passes hide only {comm.overlap_efficiency:g} of their time.
- **Patch sweep** (`l20x8`, uncalibrated analytic compute, the borrowed a100-pcie4
  communication): the U shape is reproduced (too few patches leave the 8-stage pipeline
  idle, too many make small, inefficient layer calls), but the simulated optimum is
  M = {sweep_best} where the paper's is M = 16: the roofline's half-efficiency point (256 tokens
  per call, a guess) penalises the 256-token patches of M = 16 too early, and real
  per-patch overheads (Python, kernel launches) grow faster than the 40 µs floor at M = 32.
  Calibrating `half_efficiency_tokens` and `layer_floor_us` against a measured patch sweep
  is how to close this gap.
- **Flux on 4×H100: the simulated speed-ups are too high and Ring is on the wrong side of
  Ulysses**, and calibrating the communication does not explain it: the fit asks for
  NVLink at {flux_bw * nvlink:.0f} GB/s, which no NVLink runs at, and still leaves a
  {flux_fit.rms_log_error(True):.2f} rms log error. So `h100-nvlink8` ships uncalibrated. What the
  model lacks there is on the compute side. Ring's per-hop partial-attention launches and
  online-softmax merges are priced now (issue 13: `Ring.extra_compute_s`), and the box gets
  NVLink priors (0.67 of the link, overlap 0.7) instead of 1.0, yet Ring stays too cheap:
  sequence parallelism here replicates the 512 text tokens (of 4608) on every rank, and the
  per-call overheads of the smaller shards in eager PyTorch exceed the roofline's 40 µs block
  floor. A measured Flux profile on H100 (`pfplan profile compute`) is how to check.
"""
    return [text.strip(), ""]
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


def flux_section() -> tuple[list[str], object]:
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
    more, fit = flux_calibration_attempt(flux, h100)
    return lines + more, fit


def flux_calibration_attempt(flux, h100) -> tuple[list[str], object]:
    """Fit h100-nvlink8's communication to the same Flux runs, to see whether transfers explain them."""
    from planner.topology_calibration import calibrate_topology
    from profiles.catalog.measured_runs import load_measured_runs

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
    return lines + [""], fit


def a100_section(model, cluster, cost, title: str, intro: list[str], *, marks: bool) -> tuple[list[str], dict]:
    """Every published 4×A100 PCIe row against the simulation, and the ranking of the four methods.

    Returns the lines and ``{method: [sim / pub by resolution]}``; ``marks`` adds a column
    saying which rows were calibration inputs.
    """
    fit_col = " in the calibration |" if marks else ""
    lines = ["", f"## {title}", "", *intro, "",
             f"| res | method | published s | simulated s | sim / pub | speed-up vs 1 GPU (pub / sim) |{fit_col}",
             "|---|---|---|---|---|---|" + ("---|" if marks else "")]
    summary, ratios = [], {}
    for res, published in published_a100().items():
        simulated = {name: run(model, cluster, cost, res, spec) for name, spec in SPECS.items()}
        by_m = {m: run(model, cluster, cost, res, f"pipefusion=4,patches={m},warmup=1") for m in PATCH_CHOICES}
        best_m = min(by_m, key=by_m.get)
        simulated["PipeFusion"] = by_m[best_m]
        for name in ("1 GPU", *PARALLEL):
            label = f"{name} (M={best_m})" if name == "PipeFusion" else name
            pub, sim = published[name], simulated[name]
            ratios.setdefault(name, []).append(sim / pub)
            mark = f" {FITTED.get((name, res)) or FITTED.get((name, None)) or 'check'} |" if marks else ""
            lines.append(f"| {res} | {label} | {pub:.3f} | {sim:.3f} | {sim / pub:.2f} | "
                         f"{published['1 GPU'] / pub:.2f} / {simulated['1 GPU'] / sim:.2f} |{mark}")
        ring = run(model, cluster, cost, res, "ring=4")
        lines.append(f"| {res} | Ring-4 (not published) | - | {ring:.3f} | - | - / {simulated['1 GPU'] / ring:.2f} |"
                     + (" - |" if marks else ""))
        ratios.setdefault("Ring-4 vs PipeFusion", []).append(ring / simulated["PipeFusion"])
        pub_par = {k: published[k] for k in PARALLEL}
        sim_par = {k: simulated[k] for k in PARALLEL}
        summary.append((res, order(pub_par), order(sim_par), kendall_tau(pub_par, sim_par),
                        min(pub_par, key=pub_par.get) == min(sim_par, key=sim_par.get)))
        ratios.setdefault("tau", []).append(kendall_tau(pub_par, sim_par))
    lines += ["", "Ranking of the four parallel methods, fastest first:", "",
              "| res | published | simulated | Kendall τ | same winner |", "|---|---|---|---|---|"]
    for res, pub, sim, tau, top in summary:
        lines.append(f"| {res} | {pub} | {sim} | {tau:+.2f} | {'yes' if top else 'no'} |")
    return lines, ratios


def priors_section(model, shipped, cost) -> tuple[list[str], dict]:
    """The uncalibrated box with the communication priors (profiles/topology/priors.py) instead of 1.0."""
    from profiles.topology.priors import prior_communication

    comm = prior_communication(set(shipped.route_class_counts))
    box = ClusterGraph(shipped.topology.model_copy(update={"communication": comm}))
    per = ", ".join(f"{k} {v:g}" for k, v in comm.bandwidth_by_route_class.items())
    return a100_section(model, box, cost, "4×A100 PCIe, uncalibrated with communication priors", [
        f"As the uncalibrated table, but the links at the public-NCCL priors per route class ({per})",
        f"and overlap {comm.overlap_efficiency:g}: what a box nobody measured now gets. The priors come from",
        "nccl-tests threads on other boxes (cited in the code), not from these rows."], marks=False)


def memory_section() -> list[str]:
    """Published peak memory (docs/references.md §7) against the whole-deployment model, and against
    the transformer-only model it replaced."""
    from benchmarks.published_memory import AS_PUBLISHED, ROWS, SOURCE, predicted

    lines = ["", "## Peak memory per GPU (development set, never fitted)", "",
             f"Published: {SOURCE}, 8 GPUs, GB = 10⁹ bytes of `torch.cuda.max_memory_allocated` on the last",
             "rank (xDiT's examples print it there). Simulated: `benchmarks/published_memory.py` — the whole",
             "pipeline on every GPU in the model's dtype, latent output (the configuration read from xDiT's",
             "examples, see that module), the printing rank's allocated peak. *Before*: what",
             "`memory_per_device` counted until issue 13 (transformer weights, activations, K/V and receive",
             "buffers).", "",
             "| model | res | method | published GB | before GB | error before | simulated GB | error | phase |",
             "|---|---|---|---|---|---|---|---|---|"]
    before_errs, errs, signed = [], [], []
    for row in ROWS:
        m = predicted(row, AS_PUBLISHED)
        before = (m.parameters + m.activations + m.kv_buffers + m.receive_buffers) / 1e9
        after = m.allocated / 1e9
        eb, ea = 100 * (before / row.published_gb - 1), 100 * (after / row.published_gb - 1)
        before_errs.append(abs(eb))
        errs.append(abs(ea))
        signed.append(ea)
        lines.append(f"| {row.model} | {row.resolution} | {row.method} | {row.published_gb:.2f} | {before:.2f} | "
                     f"{eb:+.1f}% | {after:.2f} | {ea:+.1f}% | {m.phase} |")
    within = sum(e <= 15 for e in errs)
    over = [f"{r.model} {r.resolution} px {r.method} ({e:+.1f}%)" for r, e in zip(ROWS, signed) if abs(e) > 15]
    lines += ["", f"MAPE before {sum(before_errs) / len(before_errs):.1f}%, after {sum(errs) / len(errs):.1f}%; "
              f"{within} of {len(errs)} rows within 15 % (worst {max(errs):.1f}%)"
              + (f"; over: {', '.join(over)}." if over else ".")
              + " What closes the gap is the text encoders (T5-XXL ≈ 4.76 B parameters, its `wo` projections "
              "kept in fp32 by transformers when the rest loads in fp16) and the VAE. PipeFusion rows put on "
              "each stage the blocks xDiT's own default split gives it (ceil(L/N) per stage, read from xDiT's "
              "`_split_transformer_blocks`; Flux's printing last rank holds one single-stream block of 57). "
              "That rule was read from xDiT's code after an earlier run, with pfplan's balanced split, had "
              "Flux's two PipeFusion rows 16-18 % over: these rows are a development set, not a held-out check, "
              "and no constant was fitted to them.", ""]
    return lines


def per_strategy_errors(tables: dict[str, dict[str, list[tuple[float, float]]]]) -> dict[str, dict[str, float]]:
    """section → method → mean |sim / pub − 1| in %."""
    return {sec: {m: 100 * sum(abs(s / p - 1) for p, s in rows) / len(rows) for m, rows in methods.items()}
            for sec, methods in tables.items()}


def parse_tables(text: str) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``## 4×A100 …`` sections of this script's output → method → [(published, simulated)]."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip() if ("4×A100" in line or line.startswith("## Flux")) else None
        elif section and line.startswith("| ") and line.count("|") >= 6:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0].isdigit() and len(cells) >= 6 and cells[2] not in ("-", "published s"):
                method = cells[1].split(" (M=")[0]
                out.setdefault(section, {}).setdefault(method, []).append((float(cells[2]), float(cells[3])))
            elif section.startswith("Flux") and cells[0] not in ("method", "run", "---"):
                try:
                    out.setdefault(section, {}).setdefault(cells[0], []).append((float(cells[1]), float(cells[2])))
                except ValueError:
                    pass
    return out


def before_after_section(before_text: str, after_text: str) -> list[str]:
    before, after = per_strategy_errors(parse_tables(before_text)), per_strategy_errors(parse_tables(after_text))
    lines = ["", "## Errors per strategy, before and after issue 13", "",
             "Mean |simulated / published − 1| over the three resolutions, from the earlier run's tables (`--before`)",
             "and this run's. Rows marked as calibration inputs in the calibrated table agree by construction.", "",
             "| table | method | before | after |", "|---|---|---|---|"]
    for sec in after:
        for method, err in after[sec].items():
            old = before.get(sec, {}).get(method)
            lines.append(f"| {sec} | {method} | {'-' if old is None else f'{old:.1f}%'} | {err:.1f}% |")
    return lines + [""]


def span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def subset_fits(model, shipped, calibrated_cost) -> dict[str, float]:
    """The bandwidth efficiency TP's rows alone and Ulysses' rows alone would give."""
    from planner.topology_calibration import calibrate_topology
    from profiles.catalog.measured_runs import load_measured_runs

    runs, _ = load_measured_runs(MEASUREMENTS)
    out = {}
    for label in ("TP-4", "Ulysses-4"):
        subset = runs.model_copy(update={"runs": [r for r in runs.runs if r.name() == label]})
        fit = calibrate_topology(shipped.topology, model, calibrated_cost, subset, file=MEASUREMENTS, source="subset")
        out[label] = fit.communication.bandwidth_efficiency
    return out


def pipefusion_sensitivity(model, shipped, calibrated_cost) -> dict[str, float]:
    """Best-M PipeFusion at 1024 px under three communication assumptions (same compute)."""
    def best(comm: Communication) -> float:
        cluster = ClusterGraph(shipped.topology.model_copy(update={"communication": comm}))
        return min(run(model, cluster, calibrated_cost, 1024, f"pipefusion=4,patches={m},warmup=1")
                   for m in PATCH_CHOICES)
    comm = shipped.topology.communication
    return {"ideal": best(Communication()), "calibrated": best(comm),
            "no overlap": best(Communication(bandwidth_efficiency=comm.bandwidth_efficiency, overlap_efficiency=0))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdout", action="store_true")
    parser.add_argument("--before", type=Path, help="--stdout text of an earlier run, for the before/after table.")
    args = parser.parse_args()
    model = load_model("pixart-alpha")
    shipped = load_cluster("a100-pcie4")
    ideal = ClusterGraph(shipped.topology.model_copy(update={"communication": Communication()}))
    analytic = cost_model_for(model, "a100-pcie")
    calibrated = cost_model_for(model, "a100-pcie", CALIBRATED_PROFILE)
    comm = shipped.topology.communication
    link = shipped.route(shipped.devices[0], shipped.devices[2]).bottleneck_gb_s
    lines = [f"Generated by `{COMMAND}` (published figures from docs/references.md §2, the PixArt rows read from",
             f"`profiles/data/measurements/{MEASUREMENTS}.yaml`; simulated ones from `simulate()`).",
             "PixArt-α, 20 steps, seconds. PipeFusion: 4 stages, W = 1, the best M of "
             + ", ".join(map(str, PATCH_CHOICES)) + " as simulated. DistriFusion: 4 devices, 1 synchronous step. "
             "Ulysses, TP: degree 4."]
    section, raw = a100_section(model, ideal, analytic, "4×A100 PCIe, uncalibrated", [
        f"Data sheets only: the analytic cost model `{analytic.name}` and `a100-pcie4`'s links at",
        "full speed with perfect overlap (communication efficiencies reset to 1). What the tools",
        "predict for a box nobody has measured; no published figure is an input."], marks=False)
    lines += section
    section, _ = priors_section(model, shipped, analytic)
    lines += section
    section, cal = a100_section(model, shipped, calibrated, "4×A100 PCIe, calibrated (PipeFusion held out)", [
        f"Compute: `{CALIBRATED_PROFILE}` (the analytic model scaled by one factor to the",
        "published 1-GPU time at 1024 px). Communication: the shipped `a100-pcie4`, whose",
        f"bandwidth efficiency {comm.bandwidth_efficiency:g} and overlap efficiency {comm.overlap_efficiency:g} "
        "were fitted by `pfplan topology calibrate`",
        "to the published TP and Ulysses rows (bandwidth) and DistriFusion rows (overlap). The last",
        "column says which rows were inputs: those rows agree by construction, up to what three",
        "numbers can fit. No PipeFusion figure went into any of the three numbers."], marks=True)
    lines += section
    subsets = subset_fits(model, shipped, calibrated)
    sensitivity = pipefusion_sensitivity(model, shipped, calibrated)
    l20 = load_cluster("l20x8")
    l20_cost = cost_model_for(model, "l20")
    sweep = {m: run(model, l20, l20_cost, 1024, f"pipefusion=8,patches={m},warmup=1") for m in PUBLISHED_L20_SWEEP}
    lines += ["", "## Patch-count sweep: PipeFusion N=8 on 8×L20 PCIe (`l20x8`), PixArt-α 1024 px", "",
              f"Cost model `{l20_cost.name}`.", "", "| M | published s | simulated s | sim / pub |", "|---|---|---|---|"]
    for m, pub in PUBLISHED_L20_SWEEP.items():
        lines.append(f"| {m} | {pub:.2f} | {sweep[m]:.3f} | {sweep[m] / pub:.2f} |")
    lines += ["", f"Best M: published {min(PUBLISHED_L20_SWEEP, key=PUBLISHED_L20_SWEEP.get)}, "
              f"simulated {min(sweep, key=sweep.get)}.", ""]
    flux_lines, flux_fit = flux_section()
    lines += flux_lines
    lines += notes(raw=raw, cal=cal, comm=comm, link=link, subsets=subsets, sensitivity=sensitivity,
                   flux_fit=flux_fit, sweep_best=min(sweep, key=sweep.get))
    lines += memory_section()
    text = "\n".join(lines)
    if args.before:
        text += "\n" + "\n".join(before_after_section(args.before.read_text(), text))
    if args.stdout:
        sys.stdout.write(text)
    else:
        replace_section(ROOT / "docs" / "validation.md", BEGIN, END, f"{BEGIN}\n{text}\n{END}", title=TITLE)
        print(f"wrote {ROOT / 'docs' / 'validation.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
