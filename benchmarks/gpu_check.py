"""``make gpu-check``: the project's CUDA paths and real-size profiles in one bounded, unattended run.

Why: GPU time comes rarely and in minutes (one H100/H200), and until it comes every GPU
figure the planner uses is a data-sheet roofline. This script is the whole visit, prepared:
it runs, in order of value, (1) the CUDA tests, (2) real-size bf16 per-layer profiles of
pixart-alpha (1024 and 2048 px) and flux-dev (1024 px) through ``pfplan profile compute``,
(3) a timed real-size serial ``pfrun`` of pixart-alpha (20 steps) beside ``pfplan
simulate`` of the same plan with the measured profile, (4) the overlap profiler (it needs
two GPUs: NCCL refuses two ranks on one device), (5) measured vs analytic per-layer time.

Every step is its own subprocess running the project's own command (so each figure comes
with the command line that made it, and a hung step can be killed), under one time budget
(``--budget-s``, 480 s by default): a step starts only while budget is left and is killed
when it runs out; what earlier steps measured is kept. The report
(``docs/gpu/<device>-<date>.md`` under ``--out``, plus a JSON twin) is rewritten after every
step, so even a machine taken away mid-run leaves the steps done so far.

``--dry`` runs the same steps on the CPU with the tiny presets (pixart-tiny, flux-tiny) and
tiny settings in about a minute, into a temporary folder unless ``--out`` is given: CI runs
it (tests/planner/test_gpu_check.py) so the script is known to work before a GPU is there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
STEP_TITLES = {
    "cuda_tests": "1. CUDA tests",
    "profiles": "2. Real-size per-layer profiles",
    "serial_run": "3. Serial pfrun vs pfplan simulate",
    "overlap": "4. Overlap profiler",
    "analytic_vs_measured": "5. Measured vs analytic per-layer time",
}
STEPS = tuple(STEP_TITLES)
RESERVE_S = 2.0
"""Budget kept back for writing the report after the last step."""
MIN_FIRST_S = 1.0


@dataclass(frozen=True)
class Mode:
    """What each step measures: the real run on a GPU, or the tiny dry run on the CPU."""

    dry: bool
    device: str
    """torch device of the measurements: cuda or cpu."""
    profile_dtype: str
    run_dtype: str
    profiles: tuple[tuple[str, tuple[int, ...]], ...]
    """(model, resolutions) measured in step 2; the first is the one steps 3 and 5 use."""
    compute_options: tuple[str, ...]
    steps: int
    caps_s: dict[str, float]
    """Longest each step may run (the budget may cut it shorter)."""

    @staticmethod
    def make(dry: bool) -> "Mode":
        if dry:
            return Mode(dry=True, device="cpu", profile_dtype="fp32", run_dtype="float32",
                        profiles=(("pixart-tiny", (256,)), ("flux-tiny", (256,))),
                        compute_options=("--max-patches", "2", "--batches", "1", "--shards", "2",
                                         "--tensor-shards", "1,2", "--warmup", "1", "--repeats", "2",
                                         "--threads", "1", "--no-pass-overhead"),
                        steps=8, caps_s={"cuda_tests": 120, "profiles": 120, "serial_run": 120,
                                          "overlap": 90, "analytic_vs_measured": 60})
        return Mode(dry=False, device="cuda", profile_dtype="bf16", run_dtype="bfloat16",
                    profiles=(("pixart-alpha", (1024, 2048)), ("flux-dev", (1024,))),
                    compute_options=("--max-patches", "8", "--batches", "1,2", "--shards", "2,4",
                                     "--tensor-shards", "1,2,4", "--warmup", "2", "--repeats", "5"),
                    steps=20, caps_s={"cuda_tests": 150, "profiles": 240, "serial_run": 180,
                                      "overlap": 90, "analytic_vs_measured": 60})


@dataclass
class StepResult:
    name: str
    status: str = "not reached"
    """ok, skipped (with a reason), failed, budget (killed when the budget ran out), not reached."""
    reason: str = ""
    wall_s: float = 0.0
    commands: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


class BudgetExhausted(Exception):
    """The budget ran out while a command was running (it was killed)."""


class StepFailed(Exception):
    """A command of the step failed; the message is its last lines."""


@dataclass
class Check:
    """One run: the mode, the budget clock, where things go, and the results so far."""

    mode: Mode
    budget_s: float
    out: Path
    gpu: str
    device_name: str
    started: float = field(default_factory=time.monotonic)
    date: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    results: dict[str, StepResult] = field(default_factory=lambda: {n: StepResult(n) for n in STEPS})
    files: dict[str, str] = field(default_factory=dict)
    stack: str = ""
    """Software versions, for the report's head (read once, before the clock starts)."""
    first: bool = True
    """True while the first step runs: it always starts, with at least MIN_FIRST_S, so a run reports something."""

    @property
    def report_path(self) -> Path:
        return self.out / "docs" / "gpu" / f"{self.gpu}-{self.date}.md"

    @property
    def profiles_dir(self) -> Path:
        return self.out / "profiles" / "data" / "profiles"

    @property
    def work_dir(self) -> Path:
        return self.out / "gpu-check-work"

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def run(self, step: StepResult, shown: list[str], argv: list[str], cap_s: float,
            ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (shown in the report as ``shown``) within the step's cap and the budget."""
        step.commands.append(shlex.join(shown))
        left = self.left_s() - RESERVE_S
        if self.first:
            left = max(left, MIN_FIRST_S)
        if left <= 0:
            raise BudgetExhausted("no budget left to start it")
        limit = min(cap_s, left)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        try:
            proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            if limit < cap_s:
                raise BudgetExhausted(f"killed after {limit:.0f} s: the budget ran out") from None
            raise StepFailed(f"`{shlex.join(shown)}` ran past its {cap_s:.0f} s cap and was killed") from None
        if proc.returncode not in ok_codes:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
            raise StepFailed(f"`{shlex.join(shown)}` exited {proc.returncode}: {' / '.join(tail)}")
        return proc

    def profile_file(self, model: str) -> Path:
        return self.profiles_dir / f"{model}-{self.gpu}-measured.json"


def pfplan(*args: str) -> tuple[list[str], list[str]]:
    return ["pfplan", *args], [sys.executable, "-m", "planner", *args]


def pfrun(*args: str) -> tuple[list[str], list[str]]:
    return ["pfrun", *args], [sys.executable, "-m", "runtime", *args]


def arg_path(path: Path) -> str:
    """A path as a command's argument: relative to the repository root (the commands' cwd) when inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def rel(check: Check, path: Path) -> str:
    """A path as the report shows it: relative to --out (the repository root on a real run)."""
    try:
        return str(path.relative_to(check.out))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------------------- steps

def step_cuda_tests(check: Check, step: StepResult) -> None:
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-rs",
            "tests/runtime/test_torchrun_and_cuda.py"]
    proc = check.run(step, ["python", *args], [sys.executable, *args], check.mode.caps_s["cuda_tests"],
                     ok_codes=(0, 1, 5))
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else ""
    counts = {word: int(n) for n, word in
              (part.strip().split(" ")[:2] for part in summary.split(" in ")[0].split(",") if part.strip())
              if n.isdigit()}
    step.columns = ["passed", "failed", "skipped", "errors", "pytest summary"]
    step.rows = [[str(counts.get("passed", 0)), str(counts.get("failed", 0)), str(counts.get("skipped", 0)),
                  str(counts.get("error", 0) + counts.get("errors", 0)), summary]]
    step.data = {"counts": counts}
    skipped_reasons = sorted({line.split(":", 2)[-1].strip() for line in lines if line.startswith("SKIPPED")})
    if counts.get("failed") or counts.get("error") or counts.get("errors") or proc.returncode not in (0, 5):
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        raise StepFailed(f"{summary}: " + "; ".join(failed[:4]))
    if not counts.get("passed"):
        step.status, step.reason = "skipped", "; ".join(skipped_reasons) or summary
        return
    step.status = "ok"


def step_profiles(check: Check, step: StepResult) -> None:
    mode = check.mode
    step.columns = ["model", "resolutions px", "shapes (layer rows)", "wall s", "s per shape", "profile"]
    check.profiles_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for model, resolutions in mode.profiles:
        out = check.profile_file(model)
        shown, argv = pfplan("profile", "compute", "--model", model, "--device", mode.device, "--dtype",
                             mode.profile_dtype, "--resolutions", ",".join(map(str, resolutions)),
                             *mode.compute_options, *(() if mode.dry else ("--gpu", check.gpu)),
                             "--output", arg_path(out))
        start = time.monotonic()
        try:
            check.run(step, shown, argv, mode.caps_s["profiles"])
        except BudgetExhausted:
            if done:
                step.notes.append(f"{model}: not measured, the budget ran out")
            raise
        wall = time.monotonic() - start
        rows = layer_rows(out)
        done.append(model)
        check.files[f"profile:{model}"] = str(out)
        step.rows.append([model, ",".join(map(str, resolutions)), str(rows), f"{wall:.1f}",
                          f"{wall / max(rows, 1):.3f}", rel(check, out)])
        step.data[model] = {"wall_s": wall, "rows": rows, "file": str(out)}
    step.notes.append("s per shape = the whole command's wall time (process start, model build, VAE decode and "
                      "scheduler timing included) over the layer rows it wrote: the figure the GPU settings are "
                      "sized with (docs/gpu.md).")
    step.status = "ok"


def layer_rows(path: Path) -> int:
    data = json.loads(Path(path).read_text())
    return sum(len(rows) for rows in data.get("layers", {}).values())


def one_device_topology(check: Check) -> Path:
    """A topology of the one device the check runs on (the shipped ones have 2 or 8)."""
    path = check.work_dir / f"{check.gpu}-1.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([
        "schema_version: 1", f"name: {check.gpu}-1",
        f"description: one {check.device_name} (written by benchmarks/gpu_check.py for the serial plan)",
        "source: written by benchmarks/gpu_check.py; one device, so no link is used",
        "nodes:", "  - name: node0", f"    gpu: {check.gpu}",
        "    device_link: {bandwidth_gb_s: 10, latency_us: 10}",
        "    sockets:", "      - name: host", "        gpus: [gpu0]", ""]))
    return path


def serial_plan_file(check: Check, model: str, resolution: int) -> Path:
    from simulator.plan import plan_from_spec

    plan = plan_from_spec(model, "", height_px=resolution, width_px=resolution, steps=check.mode.steps,
                          topology=arg_path(one_device_topology(check)))
    path = check.work_dir / f"{model}-serial-{resolution}.json"
    path.write_text(plan.model_dump_json(exclude_none=True, indent=2) + "\n")
    return path


def step_serial_run(check: Check, step: StepResult) -> None:
    mode = check.mode
    model, resolutions = mode.profiles[0]
    resolution = resolutions[0]
    plan = serial_plan_file(check, model, resolution)
    shown, argv = pfrun("--plan", arg_path(plan), "--device", mode.device, "--dtype", mode.run_dtype, "--json")
    measured = json.loads(check.run(step, shown, argv, mode.caps_s["serial_run"]).stdout)
    step.columns = ["what", "latency s", "latency / steps s", "error vs measured"]
    step_times = measured["step_times_s"]
    real = measured["latency_s"]
    step.rows.append(["pfrun, measured", f"{real:.4f}", f"{real / mode.steps:.4f}", ""])
    step.notes.append(f"pfrun's step times: median {statistics.median(step_times):.4f} s, "
                      f"min {min(step_times):.4f} s, max {max(step_times):.4f} s.")
    step.data["measured"] = {"latency_s": real, "step_times_s": step_times}
    profile = check.files.get(f"profile:{model}")
    for label, extra in (("pfplan simulate, measured profile", ("--profile", arg_path(Path(profile))) if profile else None),
                         ("pfplan simulate, analytic roofline", ())):
        if extra is None:
            step.notes.append("no measured profile (step 2 did not finish): simulated with the roofline only")
            continue
        shown, argv = pfplan("simulate", "--plan", arg_path(plan), *extra, "--json")
        predicted = json.loads(check.run(step, shown, argv, mode.caps_s["serial_run"]).stdout)["prediction"]
        latency = predicted["latency_s"]
        step.rows.append([label, f"{latency:.4f}", f"{latency / mode.steps:.4f}",
                          f"{100 * (latency - real) / real:+.1f}%"])
        step.data[label] = {"latency_s": latency, "breakdown_s": predicted.get("breakdown_s", {})}
    step.notes.append(f"{model} {resolution}×{resolution}, {mode.steps} steps, serial (1 {mode.device} device), "
                      f"random weights, dtype {mode.run_dtype}; plan file {rel(check, plan)}. pfrun's latency is "
                      "the timed denoising loop plus decode as pfrun reports it; the simulated breakdown is in "
                      "the JSON twin of this report.")
    step.status = "ok"


def step_overlap(check: Check, step: StepResult) -> None:
    mode = check.mode
    if mode.device == "cuda":
        import torch

        count = torch.cuda.device_count()
        if count < 2:
            step.status = "skipped"
            step.reason = (f"needs ≥ 2 GPUs, this machine has {count}: the overlap profiler's all-gather runs "
                           "between two ranks, and NCCL refuses two ranks on one device")
            return
        topology, compute = "h100-nvlink8", ()
    else:
        topology, compute = "cpu2", ("--compute-s", "0.05")
    shown, argv = pfplan("profile", "overlap", "--nprocs", "2", "--topology", topology, "--device", mode.device,
                         "--repeats", "2" if mode.dry else "5", *compute, "--json")
    result = json.loads(check.run(step, shown, argv, mode.caps_s["overlap"]).stdout)
    step.columns = ["compute s", "all-gather s", "both s", "bytes per rank", "overlap_efficiency", "lower bound"]
    step.rows = [[f"{result['median_compute_s']:.4g}", f"{result['median_comm_s']:.4g}",
                  f"{result['median_both_s']:.4g}", str(result["bytes_per_rank"]),
                  f"{result['overlap_efficiency']:.3f}", str(bool(result["lower_bound"]))]]
    step.data = result
    step.status = "ok"


def step_analytic(check: Check, step: StepResult) -> None:
    from profiles.costs.profile_format import load_profile

    mode = check.mode
    step.columns = ["model", "layer kind", "query/kv tokens", "batch", "measured ms", "analytic ms",
                    "measured / analytic"]
    compared = 0
    for model, resolutions in mode.profiles:
        measured_file = check.files.get(f"profile:{model}")
        if not measured_file:
            step.notes.append(f"{model}: no measured profile (step 2 did not reach it)")
            continue
        out = check.work_dir / f"{model}-{check.gpu}-analytic.json"
        shown, argv = pfplan("profile", "analytic", "--gpu", check.gpu, "--model", model, "--resolutions",
                             ",".join(map(str, resolutions)), "--max-patches", max_patches(mode),
                             "--dtype", mode.profile_dtype, "--output", arg_path(out))
        check.run(step, shown, argv, mode.caps_s["analytic_vs_measured"])
        measured, analytic = load_profile(measured_file), load_profile(out)
        ratios = []
        for kind, rows in measured.layers.items():
            predicted = {(t.query_tokens, t.kv_tokens, t.batch, t.tensor_shard): t.median_s
                         for t in analytic.layers.get(kind, [])}
            kind_ratios = []
            for t in rows:
                key = (t.query_tokens, t.kv_tokens, t.batch, t.tensor_shard)
                if predicted.get(key):
                    kind_ratios.append(t.median_s / predicted[key])
                    if t.tensor_shard == 1 and t.query_tokens == t.kv_tokens and t.kv_tokens == max(
                            r.kv_tokens for r in rows if r.batch == t.batch):
                        step.rows.append([model, kind, f"{t.query_tokens}/{t.kv_tokens}", str(t.batch),
                                          f"{1e3 * t.median_s:.3f}", f"{1e3 * predicted[key]:.3f}",
                                          f"{t.median_s / predicted[key]:.2f}"])
            if kind_ratios:
                step.rows.append([model, kind, f"all {len(kind_ratios)} shapes", "", "", "",
                                  f"median {statistics.median(kind_ratios):.2f} "
                                  f"(min {min(kind_ratios):.2f}, max {max(kind_ratios):.2f})"])
                ratios += kind_ratios
        step.data[model] = {"ratios": ratios, "analytic_file": str(out)}
        compared += len(ratios)
    if not compared:
        step.status, step.reason = "skipped", "no measured profile to compare (step 2 did not finish)"
        return
    step.status = "ok"


def max_patches(mode: Mode) -> str:
    options = list(mode.compute_options)
    return options[options.index("--max-patches") + 1]


RUNNERS: dict[str, Callable[[Check, StepResult], None]] = {
    "cuda_tests": step_cuda_tests, "profiles": step_profiles, "serial_run": step_serial_run,
    "overlap": step_overlap, "analytic_vs_measured": step_analytic,
}


# ---------------------------------------------------------------------------------------- report

def md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")
    return ["| " + " | ".join(map(cell, columns)) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(map(cell, row)) + " |" for row in rows)]


def software() -> str:
    try:
        import torch

        cuda = f", CUDA {torch.version.cuda}" if torch.cuda.is_available() else ""
        return f"torch {torch.__version__}{cuda}, python {platform.python_version()}"
    except ImportError:
        return f"python {platform.python_version()}"


def report_text(check: Check, finished: bool) -> str:
    mode = check.mode
    elapsed = time.monotonic() - check.started
    head = [f"# gpu-check on {check.device_name} ({check.gpu}), {check.date}", "",
            f"Made by `{shlex.join(['python', '-m', 'benchmarks.gpu_check', *sys.argv[1:]])}`"
            f" ({'dry run on the CPU with the tiny presets' if mode.dry else 'real run'}), "
            f"budget {check.budget_s:g} s, {elapsed:.0f} s used{'' if finished else ' so far (still running)'}; "
            f"{check.stack}, host {platform.node()}. Commands are run from the repository root; `pfplan` is "
            "`python -m planner`, `pfrun` is `python -m runtime`. What the steps are: docs/gpu.md.", "",
            "## Steps", ""]
    summary = [[STEP_TITLES[r.name], r.status, f"{r.wall_s:.1f}", r.reason] for r in check.results.values()]
    lines = head + md_table(["step", "status", "wall s", "reason"], summary)
    not_reached = [STEP_TITLES[r.name] for r in check.results.values() if r.status == "not reached"]
    if not_reached and finished:
        lines += ["", "Not reached (the budget ran out first): " + ", ".join(not_reached) + "."]
    for r in check.results.values():
        lines += ["", f"## {STEP_TITLES[r.name]}", "", f"Status: **{r.status}**" + (f": {r.reason}" if r.reason else "")
                  + f" ({r.wall_s:.1f} s)."]
        if r.rows:
            lines += [""] + md_table(r.columns, r.rows)
        if r.commands:
            lines += ["", "Commands:", ""] + [f"- `{c}`" for c in r.commands]
        lines += [""] + [f"{note}" for note in r.notes] if r.notes else []
    return "\n".join(lines) + "\n"


def write_report(check: Check, finished: bool) -> None:
    check.report_path.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((check.report_path, report_text(check, finished)),
                       (check.report_path.with_suffix(".json"),
                        json.dumps({"gpu": check.gpu, "device_name": check.device_name, "date": check.date,
                                    "dry": check.mode.dry, "budget_s": check.budget_s, "finished": finished,
                                    "steps": [asdict(r) for r in check.results.values()]}, indent=2) + "\n")):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)


# ------------------------------------------------------------------------------------------ main

def identify(dry: bool, gpu: str | None) -> tuple[str, str]:
    """(catalog GPU, the device's own name): from torch.cuda, or cpu on a dry run."""
    if dry:
        return gpu or "cpu", platform.processor() or platform.machine() or "cpu"
    import torch

    if not torch.cuda.is_available():  # exit 0: `python -m benchmarks` runs every script, GPU or not
        print("gpu-check: torch sees no CUDA device, nothing measured; on a CPU machine run `make gpu-check DRY=1` "
              "(python -m benchmarks.gpu_check --dry)", file=sys.stderr)
        raise SystemExit(0)
    from profiler.compute import catalog_gpu_for

    name = torch.cuda.get_device_name(0)
    if gpu:
        return gpu, name
    try:
        return catalog_gpu_for(name), name
    except Exception as exc:  # noqa: BLE001 - InputError: say it in one line
        raise SystemExit(f"gpu-check: {getattr(exc, 'message', exc)}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny presets, tiny settings (CI).")
    parser.add_argument("--budget-s", type=float, default=480.0, help="Whole-run time budget, seconds (480).")
    parser.add_argument("--out", type=Path, default=None,
                        help="Root the report and profiles go under (docs/gpu/, profiles/data/profiles/); "
                             "default: the repository on a real run, a new temporary folder on a dry run.")
    parser.add_argument("--gpu", default=None, help="Catalog GPU name (default: from torch.cuda.get_device_name).")
    parser.add_argument("--only", default=None, help=f"Comma-separated steps to run ({', '.join(STEPS)}).")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = Mode.make(args.dry)
    gpu, device_name = identify(args.dry, args.gpu)
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpu-check-")) if args.dry else ROOT)
    check = Check(mode=mode, budget_s=args.budget_s, out=out.resolve(), gpu=gpu, device_name=device_name,
                  stack=software())
    chosen = set(args.only.split(",")) if args.only else set(STEPS)
    unknown = chosen - set(STEPS)
    if unknown:
        raise SystemExit(f"gpu-check: unknown step {', '.join(sorted(unknown))}; steps: {', '.join(STEPS)}")
    print(f"gpu-check: {gpu} ({device_name}), budget {args.budget_s:g} s, report {check.report_path}", flush=True)
    write_report(check, finished=False)
    for name in STEPS:
        step = check.results[name]
        if name not in chosen:
            step.status, step.reason = "skipped", "not chosen (--only)"
            continue
        if not check.first and check.left_s() - RESERVE_S <= 0:
            break  # this and the later steps stay "not reached"
        start = time.monotonic()
        try:
            RUNNERS[name](check, step)
        except BudgetExhausted as exc:
            step.status, step.reason = "budget", str(exc)
        except StepFailed as exc:
            step.status, step.reason = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - one step's bug must not lose the others' results
            step.status, step.reason = "failed", f"{type(exc).__name__}: {exc}"
        step.wall_s = time.monotonic() - start
        check.first = False
        print(f"gpu-check: {STEP_TITLES[name]}: {step.status}{' — ' + step.reason if step.reason else ''} "
              f"({step.wall_s:.1f} s)", flush=True)
        write_report(check, finished=False)
        if step.status == "budget":
            break
    write_report(check, finished=True)
    print(f"gpu-check: report {check.report_path}", flush=True)
    failed = [r.name for r in check.results.values() if r.status == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
