"""A rank that raises or is killed ends the whole job quickly, naming the rank, writing nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_subprocess

from .helpers import plan, write_plan


@pytest.mark.parametrize("kind", ["kill", "raise"])
def test_a_failed_rank_stops_the_job_with_its_name(tmp_path, kind):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", steps=4, degrees={"pipefusion": 2},
                                                        patches=2, warmup_steps=1))
    out = tmp_path / "image.png"
    start = time.monotonic()
    res = run_subprocess("runtime", "--plan", plan_file, "--out", out, "--trace", tmp_path / "t.json",
                         "--timeout", "20", env={"PFRUN_FAULT": f"1:2:{kind}"}, timeout=120)
    elapsed = time.monotonic() - start
    assert res.code == 1
    lines = [line for line in res.err.splitlines() if line.startswith("pfrun: error:")]
    assert len(lines) == 1, res.err
    assert "rank 1" in lines[0]
    assert ("SIGKILL" in lines[0]) if kind == "kill" else ("injected fault" in lines[0])
    assert elapsed < 20 + 15  # well inside the timeout (plus process start)
    assert list(tmp_path.iterdir()) == [plan_file]  # no image, no trace, no temp files


@pytest.mark.parametrize("fields", [{"degrees": {"pipefusion": 2}, "patches": 2, "warmup_steps": 1},
                                    {"degrees": {"ulysses": 2}}], ids=["pipefusion", "ulysses"])
def test_a_hung_rank_times_out_and_is_named(tmp_path, fields):
    plan_file = write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=4, **fields))
    start = time.monotonic()
    res = run_subprocess("runtime", "--plan", plan_file, "--out", tmp_path / "image.png", "--timeout", "3",
                         env={"PFRUN_FAULT": "1:2:hang"}, timeout=120)
    elapsed = time.monotonic() - start
    assert res.code == 1
    line = res.err.strip().splitlines()[-1]
    assert line.startswith("pfrun: error: rank 0 failed") and "rank 1" in line, res.err
    assert elapsed < 3 + 15
    assert not (tmp_path / "image.png").exists()



def test_a_one_rank_run_in_process_fails_with_one_line_naming_rank_0(tmp_path, pfrun, monkeypatch):
    """The serial path runs in the pfrun process; its exception is the same one line, exit 1."""
    out = tmp_path / "image.png"
    plan_file = write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=3))
    monkeypatch.setenv("PFRUN_FAULT", "0:1:raise")
    res = pfrun("--plan", plan_file, "--out", out, "--device", "cpu")
    assert res.code == 1, res.err
    assert res.err.count("\n") == 1 and "rank 0 failed" in res.err and "injected fault" in res.err
    assert "Traceback" not in res.err
    assert not out.exists()


# --- signals: the parent stopped (SIGTERM, SIGINT) or a rank stopped from outside (SIGKILL, SIGSTOP) ---

def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc; the ranks and anything they started)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for kid in map(int, kids):
            if kid not in out:
                out.add(kid)
                todo.append(kid)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_run(tmp_path: Path, *, fault: str | None, timeout: str = "60", steps: int = 4):
    """``pfrun`` as a user starts it, with two ranks; returns the process and its two rank pids."""
    plan_file = write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=steps, degrees={"pipefusion": 2},
                                                        patches=2, warmup_steps=1))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if fault:
        env["PFRUN_FAULT"] = fault
    proc = subprocess.Popen([sys.executable, "-m", "runtime", "--plan", str(plan_file), "--out",
                             str(tmp_path / "image.png"), "--trace", str(tmp_path / "t.json"), "--timeout", timeout,
                             "--device", "cpu"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    ranks: set[int] = set()
    while time.monotonic() < deadline and len(ranks) < 2:
        assert proc.poll() is None, proc.communicate()
        ranks = _descendants(proc.pid)
        time.sleep(0.05)
    assert len(ranks) >= 2, "the ranks did not start"
    time.sleep(1.0)  # let them reach the step loop
    return proc, ranks, plan_file


def _finish(proc: subprocess.Popen, ranks: set[int], since: float, limit_s: float):
    out, err = proc.communicate(timeout=limit_s + 30)
    elapsed = time.monotonic() - since
    deadline = time.monotonic() + 2
    while any(_alive(p) for p in ranks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in ranks if _alive(p)], "a rank outlived its run"
    assert elapsed <= limit_s, elapsed
    assert "Traceback" not in err, err
    return proc.returncode, err


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_parent_stops_every_rank_and_writes_nothing(tmp_path, sig, code):
    proc, ranks, plan_file = _start_run(tmp_path, fault="1:1:hang")
    since = time.monotonic()
    proc.send_signal(sig)
    rc, err = _finish(proc, ranks, since, 10)
    assert rc == code, err
    assert err.splitlines() == ["pfrun: interrupted: stopped 2 ranks, nothing written"], err
    assert list(tmp_path.iterdir()) == [plan_file]


def test_sigkill_of_a_rank_from_outside_stops_the_job(tmp_path):
    proc, ranks, plan_file = _start_run(tmp_path, fault="1:1:hang")
    victim = max(ranks)
    since = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    rc, err = _finish(proc, ranks, since, 10)
    assert rc == 1, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("pfrun: error: rank ") and "SIGKILL" in line, err
    assert list(tmp_path.iterdir()) == [plan_file]


def test_sigstop_of_a_rank_fails_the_run_after_the_timeout(tmp_path):
    proc, ranks, plan_file = _start_run(tmp_path, fault=None, timeout="3", steps=400)
    victim = max(ranks)
    since = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    rc, err = _finish(proc, ranks, since, 3 + 5)
    assert rc == 1, err
    assert err.strip().splitlines()[-1].startswith("pfrun: error: rank "), err
    assert list(tmp_path.iterdir()) == [plan_file]
