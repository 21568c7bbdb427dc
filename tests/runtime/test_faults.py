"""A rank that raises or is killed ends the whole job quickly, naming the rank, writing nothing."""

from __future__ import annotations

import time

import pytest

from tests.conftest import run_subprocess

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
