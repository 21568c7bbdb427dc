"""``make gpu-check DRY=1``: the GPU check's CPU twin runs end to end, and its budget stops it cleanly.

The real check runs only on a GPU machine, rarely; this dry run (tiny presets, CPU, tiny
settings, a temporary --out) is what keeps the script working until then.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import STEP_TITLES, STEPS
from tests.conftest import ROOT


def dry_run(out: Path, *extra: str, timeout: float = 420) -> tuple[subprocess.CompletedProcess[str], dict, str]:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--dry", "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    reports = sorted((out / "docs" / "gpu").glob("cpu-*.md"))
    assert len(reports) == 1, (proc.stdout, proc.stderr[-2000:])
    return proc, json.loads(reports[0].with_suffix(".json").read_text()), reports[0].read_text()


@pytest.mark.slow
def test_the_dry_run_runs_every_step_and_reports_each_with_its_commands(tmp_path: Path) -> None:
    before = sorted((ROOT / "docs" / "gpu").glob("*")) if (ROOT / "docs" / "gpu").is_dir() else []
    proc, report, text = dry_run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert report["finished"] and report["dry"]
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == list(STEPS)
    for name, step in steps.items():
        assert step["status"] in ("ok", "skipped"), (name, step)
        if step["status"] == "skipped":
            assert step["reason"], name
        assert f"## {STEP_TITLES[name]}" in text
        for command in step["commands"]:
            assert f"- `{command}`" in text
    assert steps["cuda_tests"]["status"] == ("ok" if __import__("torch").cuda.is_available() else "skipped")
    for name in ("profiles", "serial_run", "overlap", "analytic_vs_measured"):
        assert steps[name]["status"] == "ok" and steps[name]["commands"] and steps[name]["rows"], name
    # the profiles went under --out, each recording the command that made it
    for model in ("pixart-tiny", "flux-tiny"):
        profile = json.loads((tmp_path / "profiles/data/profiles" / f"{model}-cpu-measured.json").read_text())
        assert profile["provenance"]["kind"] == "measured"
        assert profile["provenance"]["command"].startswith(f"pfplan profile compute --model {model}")
    serial = steps["serial_run"]["data"]
    assert serial["measured"]["latency_s"] > 0 and serial["pfplan simulate, measured profile"]["latency_s"] > 0
    # nothing was written into the repository's own docs/gpu
    after = sorted((ROOT / "docs" / "gpu").glob("*")) if (ROOT / "docs" / "gpu").is_dir() else []
    assert after == before


def test_a_tiny_budget_stops_after_the_first_step_keeping_the_report(tmp_path: Path) -> None:
    proc, report, text = dry_run(tmp_path, "--budget-s", "3", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["cuda_tests"]["status"] in ("budget", "ok", "skipped")
    assert steps["cuda_tests"]["commands"]
    later = [name for name in STEPS if name != "cuda_tests"]
    assert all(steps[name]["status"] == "not reached" for name in later)
    assert "Not reached (the budget ran out first): " + ", ".join(STEP_TITLES[n] for n in later) + "." in text
    assert not (tmp_path / "profiles").exists()


def test_unknown_steps_are_refused_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--dry", "--out", str(tmp_path),
                           "--only", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "gpu-check: unknown step nope; steps: cuda_tests" in proc.stderr
