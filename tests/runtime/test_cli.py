"""The real pfrun command: outputs, refusals and the serial comparison."""

from __future__ import annotations

import json

from tests.conftest import run_subprocess

from .helpers import plan, write_plan


def test_serial_run_writes_the_image_and_reports_latency(tmp_path, pfrun):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", steps=2))
    res = pfrun("--plan", plan_file, "--out", tmp_path / "img.png", "--json")
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["latency_s"] > 0 and len(report["step_times_s"]) == 2
    assert report["images"] == [str(tmp_path / "img.png")]
    assert (tmp_path / "img.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unrunnable_plan_is_one_line_and_exit_2(tmp_path, pfrun):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", degrees={"ulysses": 2}))
    res = pfrun("--plan", plan_file)
    assert res.code == 2
    assert res.err.count("\n") == 1 and "ulysses(2) not executed" in res.err


def test_invalid_plan_is_one_line_and_exit_2(tmp_path, pfrun):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", degrees={"pipefusion": 2}, patches=99,
                                                        warmup_steps=1))
    res = pfrun("--plan", plan_file)
    assert res.code == 2 and res.err.count("\n") == 1 and "patches" in res.err


def test_reference_reports_difference_and_psnr(tmp_path):
    plan_file = write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=3, degrees={"pipefusion": 2},
                                                        patches=2, warmup_steps=1))
    res = run_subprocess("runtime", "--plan", plan_file, "--reference", "--out", tmp_path / "i.png", timeout=120)
    assert res.code == 0, res.err
    assert "vs serial: max abs diff" in res.out and "PSNR" in res.out


def test_data_parallel_writes_one_image_per_replica(tmp_path):
    plan_file = write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=2, degrees={"data": 2}))
    res = run_subprocess("runtime", "--plan", plan_file, "--out", tmp_path / "img.png", "--json", timeout=120)
    assert res.code == 0, res.err
    assert json.loads(res.out)["images"] == [str(tmp_path / "img.png"), str(tmp_path / "img-1.png")]
