"""The profile's runtime launches come from a clean interpreter (profiler/runtime_launch.py)."""

from __future__ import annotations

import json

import pytest

from profiler import runtime_launch
from profiles.catalog.models import load_model


def test_launches_run_in_a_new_interpreter_and_its_failure_is_one_line(monkeypatch) -> None:
    seen = {}

    class Done:
        returncode, stdout, stderr = 1, "", "Traceback ...\nValueError: no such device"

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        return Done()

    monkeypatch.setattr(runtime_launch.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match=r"runtime launches of pixart-tiny failed: ValueError: no such device"):
        runtime_launch.time_runtime_launches(load_model("pixart-tiny"), resolution_px=256, steps=2, launches=1,
                                             device="cpu")
    executable, flag, code, args = seen["cmd"]
    assert flag == "-c" and code is runtime_launch._CHILD and '"launches": 1' in args


def test_the_result_is_the_last_line_and_noise_before_it_is_ignored(monkeypatch) -> None:
    events = [{"ts": 2000.0, "dur": 5000.0, "cat": "compute"}, {"ts": 8000.0, "dur": 4000.0, "cat": "compute"},
              {"ts": 13000.0, "dur": 30000.0, "cat": "vae"}]

    class Done:
        returncode, stderr = 0, "a warning\n"
        stdout = "some library's banner\n" + json.dumps([{"events": events, "latency_s": 0.05}]) + "\n"

    monkeypatch.setattr(runtime_launch.subprocess, "run", lambda cmd, **kwargs: Done())
    launch = runtime_launch.time_runtime_launches(load_model("pixart-tiny"), resolution_px=256, steps=2, launches=1,
                                                  device="cpu")
    assert launch.latency_s == 0.05 and launch.vae_decode_s == 0.03 and launch.setup_s == 0.002
    assert launch.step_s == 0.004 and launch.first_step_extra_s == pytest.approx(0.001)


def test_a_launcher_that_prints_no_result_is_one_line(monkeypatch) -> None:
    class Done:
        returncode, stdout, stderr = 0, "", "MemoryError"

    monkeypatch.setattr(runtime_launch.subprocess, "run", lambda cmd, **kwargs: Done())
    with pytest.raises(RuntimeError, match=r"printed no result \(last error line: MemoryError\)"):
        runtime_launch.time_runtime_launches(load_model("pixart-tiny"), resolution_px=256, steps=2, launches=1,
                                             device="cpu")


def test_two_launches_read_their_spans() -> None:
    launch = runtime_launch.time_runtime_launches(load_model("pixart-tiny"), resolution_px=64, steps=2, launches=2,
                                                  device="cpu")
    assert launch.launches == 2 and launch.steps == 2 and launch.fresh_process
    assert launch.step_s > 0 and launch.vae_decode_s and launch.vae_decode_s > 0
    assert 0 < launch.setup_s < launch.latency_s
