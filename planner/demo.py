"""``make demo``: the main job end to end on this machine.

profile → search → run → simulate → validate → report, on the ``cpu2`` topology (this machine's two CPU ranks)
and the tiny PixArt preset:

1. the per-layer profile of ``pixart-tiny`` measured on this CPU (the shipped
   ``pixart-tiny-cpu`` profile, made by ``pfplan profile compute``; ``--fresh`` measures
   it again, which takes about a minute);
2. ``pfplan search`` picks the fastest plan ``pfrun`` can run and writes ``plan.json``;
3. ``pfrun`` runs it with torch.distributed (gloo), writes the image and the measured trace,
   and compares the image with a serial run (the price of PipeFusion's stale K/V);
4. ``pfplan simulate`` writes the simulated trace of the same plan, ``pfplan validate``
   compares it with the measured one (end to end, per category, step and compute unit), and
   ``pfplan capacity`` sizes a fleet for 20 images/s, ``pfplan report`` writes an HTML report; the predicted and measured latencies are printed
   side by side.

Every step runs the real command (pfplan in-process, pfrun as its own process); the files land in ``out/demo/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from planner.cli import app
from profiles.cli_support import run_app
from simulator.plan import ParallelPlan
from simulator.trace import Trace, load_trace

MODEL, TOPOLOGY, STEPS, PROFILE = "pixart-tiny", "cpu2", "4", "pixart-tiny-cpu"


def split_measured(trace: Trace) -> tuple[float, float]:
    """(denoising loop, VAE decode) seconds of a measured trace: what the simulator prices, and what it does not."""
    work = trace.work()
    loop = [e for e in work if e.cat != "vae"]
    start = min(e.ts for e in work)
    denoise = (max(e.ts + e.dur for e in loop) - start) / 1e6 if loop else 0.0
    vae = max((e.dur for e in work if e.cat == "vae"), default=0.0) / 1e6
    return denoise, vae


def pfplan(title: str, args: list[str]) -> int:
    print(f"\n== {title}: pfplan {' '.join(args)}", flush=True)
    return run_app(app, "pfplan", args)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out = Path("out/demo")
    out.mkdir(parents=True, exist_ok=True)
    plan_file, results = out / "plan.json", out / "search.json"
    if code := pfplan("this machine as a topology", ["topology", "show", TOPOLOGY]):
        return code
    profile = PROFILE
    if "--fresh" in args:
        profile = str(out / "profile.json")
        if code := pfplan("profile this CPU", ["profile", "compute", "--model", MODEL, "--device", "cpu",
                                               "--resolutions", "256", "--max-patches", "8", "-o", profile]):
            return code
    else:
        print(f"\n== profile: the shipped {PROFILE} profile, measured on this CPU "
              f"(`make demo ARGS=--fresh` measures it again)", flush=True)
    search = ["search", "--topology", TOPOLOGY, "--model", MODEL, "--steps", STEPS, "--profile", profile,
              "--runnable-only", "--top", "6", "-o", str(plan_file), "--results", str(results)]
    if code := pfplan("choose the plan", search):
        return code
    plan = ParallelPlan.model_validate_json(plan_file.read_text())
    run_args = ["--plan", str(plan_file), "--out", str(out / "image.png"), "--trace", str(out / "measured-trace.json"),
                "--reference", "--json"]
    print(f"\n== run it: pfrun {' '.join(run_args)}", flush=True)
    # pfrun runs as its own command, as a user runs it (and the planner never imports the runtime).
    run = subprocess.run([sys.executable, "-m", "runtime", *run_args], stdout=subprocess.PIPE, text=True)
    if run.returncode:
        return run.returncode
    result = json.loads(run.stdout)
    print(json.dumps({k: v for k, v in result.items() if k != "step_times_s"}, indent=2))
    if code := pfplan("simulate the same plan", ["simulate", "--plan", str(plan_file), "--profile", profile,
                                                 "--trace", str(out / "simulated-trace.json")]):
        return code
    if code := pfplan("compare the simulated and the measured trace",
                      ["validate", str(out / "simulated-trace.json"), str(out / "measured-trace.json")]):
        return code
    if code := pfplan("how many CPU ranks serve 20 images/s with p99 under 0.5 s",
                      ["capacity", "--topology", TOPOLOGY, "--model", MODEL, "--steps", STEPS, "--profile", profile,
                       "--rate", "20", "--slo-s", "0.5", "--requests", "1000",
                       "--results", str(out / "capacity.json")]):
        return code
    if code := pfplan("report", ["report", str(results), "--capacity", str(out / "capacity.json"),
                                 "-o", str(out / "report.html")]):
        return code
    measured = result["latency_s"]
    denoise, vae = split_measured(load_trace(out / "measured-trace.json"))
    prediction = plan.prediction
    predicted = prediction.latency_s if prediction else float("nan")
    predicted_vae = prediction.breakdown_s.get("vae", 0.0) if prediction else float("nan")
    loop = predicted - predicted_vae
    print(f"\n{plan.degrees.label()} on {TOPOLOGY} ({prediction.cost_model if prediction else '-'}):")
    print(f"  denoising loop: predicted {loop:.3g} s, measured {denoise:.3g} s (measured/predicted {denoise / loop:.2f})")
    print(f"  VAE decode: predicted {predicted_vae:.3g} s, measured {vae:.3g} s")
    print(f"  end to end: predicted {predicted:.3g} s, measured {measured:.3g} s "
          f"(measured/predicted {measured / predicted:.2f})")
    if prediction and prediction.unpriced:
        print(f"  not priced by the cost model (counted as 0): {', '.join(prediction.unpriced)}")
    print(f"files: {', '.join(sorted(p.name for p in out.iterdir()))} in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
