"""The measured validation suite's plan list and report (the runs themselves need an idle machine)."""

from __future__ import annotations

import pytest

from benchmarks import validation_suite as suite
from simulator.strategies import STRATEGIES


def test_at_least_12_valid_plans_cover_every_strategy_pfrun_runs():
    assert len(suite.PLANS) >= 12
    executable = {s.name for s in STRATEGIES if s.runtime_module} | {"serial"}
    assert {strategy for strategy, _ in suite.PLANS} >= executable
    for strategy, spec in suite.PLANS:
        plan = suite.make_plan(spec)
        assert suite.predicted_s(plan) > 0
        assert strategy == "serial" or plan.degrees.as_dict()[strategy] == 2


def test_report_has_mape_tau_and_top1():
    rows = [{"strategy": "serial", "spec": "", "steps": 4, "predicted_s": 1.0, "measured_s": 2.0, "runs": [2.0]},
            {"strategy": "cfg", "spec": "cfg=2", "steps": 4, "predicted_s": 0.5, "measured_s": 1.0, "runs": [1.0]},
            {"strategy": "data", "spec": "data=2", "steps": 4, "predicted_s": 3.0, "measured_s": 2.5, "runs": [2.5]}]
    for r in rows:
        r["error_pct"] = 100 * (r["predicted_s"] - r["measured_s"]) / r["measured_s"]
    text = suite.section(rows, repeats=1, wall_s=1.0, command="cmd", load=(0.1, 0.2))
    assert "MAPE 40.0%" in text and "Kendall τ +1.00" in text and "(same)" in text
    assert suite.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_a_missed_fastest_plan_is_reported_with_both_plans_runs_side_by_side():
    rows = [{"strategy": "serial", "spec": "", "steps": 4, "predicted_s": 0.1215, "measured_s": 0.134,
             "runs": [0.136, 0.121, 0.128, 0.134, 0.144]},
            {"strategy": "cfg", "spec": "cfg=2", "steps": 4, "predicted_s": 0.1212, "measured_s": 0.148,
             "runs": [0.168, 0.135, 0.140, 0.152, 0.148]}]
    for r in rows:
        r["error_pct"] = 100 * (r["predicted_s"] - r["measured_s"]) / r["measured_s"]
    text = suite.section(rows, repeats=5, wall_s=1.0, command="cmd", load=(0.1, 0.2))
    assert "(different)" in text
    assert "`serial` was the faster in 5 of 5 repetitions, its median 10.4 % below" in text
    assert "predicted, `cfg=2` is 0.25 % below `serial`" in text


def test_a_step_count_runs_every_plan_without_its_own_and_writes_its_own_section():
    assert suite.make_plan("cfg=2", 20).steps == 20 and suite.make_plan("cfg=2").steps == suite.STEPS
    # a plan's own steps are relative to the preset's, so the ranking compares runs of like length
    assert suite.make_plan("ulysses=2,steps=8").steps == 8 and suite.make_plan("ulysses=2,steps=8", 20).steps == 40
    rows = [{"strategy": "serial", "spec": "", "steps": 20, "predicted_s": 1.0, "measured_s": 1.0, "runs": [1.0],
             "error_pct": 0.0}]
    text = suite.section(rows, repeats=1, wall_s=1.0, command="cmd", load=(0.1, 0.2), steps=20)
    assert text.startswith("<!-- validation_suite_steps20:begin -->")
    assert text.endswith("<!-- validation_suite_steps20:end -->")
    assert suite.markers(suite.STEPS) == (suite.BEGIN, suite.END)
