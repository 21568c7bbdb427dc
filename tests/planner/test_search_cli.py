"""``pfplan search``, ``capacity`` and ``report`` end to end on cpu2 with a tiny preset."""

from __future__ import annotations

import json

import pytest

from profiles.catalog.models import load_model
from profiles.topology.graph import load_cluster
from simulator.plan import ParallelPlan, validate
from tests.planner.presets import HUGE


@pytest.fixture
def searched(pfplan, tmp_path):
    plan_file, results = tmp_path / "plan.json", tmp_path / "search.json"
    result = pfplan("search", "--topology", "cpu2", "--model", "pixart-tiny", "--steps", "4",
                    "--runnable-only", "-o", plan_file, "--results", results)
    assert result.code == 0, result.err
    return result, plan_file, results


def test_search_writes_a_valid_plan_with_prediction_and_provenance(searched, pfplan):
    result, plan_file, results = searched
    plan = ParallelPlan.model_validate_json(plan_file.read_text())
    validate(plan, load_model("pixart-tiny"), load_cluster("cpu2"))
    assert plan.prediction is not None and plan.prediction.latency_s > 0
    prov = plan.provenance
    assert prov is not None and prov.topology == "cpu2" and len(prov.topology_sha256 or "") == 64
    assert prov.command.startswith("pfplan search --topology cpu2 --model pixart-tiny")
    assert plan.placement and plan.topology == "cpu2"
    assert "pixart-tiny" in result.out and "why it lost" in result.out
    assert pfplan("plan", "validate", plan_file).code == 0


def test_search_json_output(pfplan, tmp_path):
    result = pfplan("search", "--topology", "cpu2", "--model", "dit-tiny", "--steps", "4", "--json", "--top", "3")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["plan"]["model"] == "dit-tiny" and len(data["alternatives"]) <= 3
    assert data["alternatives"][0]["rank"] == 1 and data["alternatives"][0]["lost_because"] == ""
    assert not list(tmp_path.iterdir())  # nothing written without -o


def test_report_from_search_and_from_plan(searched, pfplan, tmp_path):
    _, plan_file, results = searched
    report = json.loads(results.read_text())
    html_file = tmp_path / "report.html"
    assert pfplan("report", results, "-o", html_file).code == 0
    page = html_file.read_text()
    assert "plotly" in page.lower()
    for rec in report["candidates"][:5]:
        assert rec["label"] in page
    plan_html = tmp_path / "plan.html"
    assert pfplan("report", plan_file, "-o", plan_html).code == 0
    plan = json.loads(plan_file.read_text())
    assert ParallelPlan.model_validate(plan).degrees.label() in plan_html.read_text()


def test_capacity(pfplan):
    result = pfplan("capacity", "--topology", "cpu2", "--model", "pixart-tiny", "--steps", "4", "--rate", "3",
                    "--json")
    assert result.code == 0, result.err
    options = json.loads(result.out)
    assert options
    for o in options:
        assert o["replicas"] * o["replica_throughput"] >= 3 - 1e-9
        assert o["total_devices"] == o["replicas"] * o["devices_per_replica"]


def test_bad_inputs_are_one_line(pfplan, tmp_path):
    bad = pfplan("search", "--topology", "cpu2", "--model", "pixart-tiny", "--objective", "fastest")
    assert bad.code == 2 and bad.err.count("\n") == 1 and "--objective" in bad.err
    res = pfplan("search", "--topology", "cpu2", "--model", "pixart-tiny", "--resolution", "100")
    assert res.code == 2 and res.err.count("\n") == 1 and "resolution" in res.err
    preset = tmp_path / "huge.yaml"
    preset.write_text(HUGE)
    out = tmp_path / "plan.json"
    huge = pfplan("search", "--topology", "t4x4", "--model", preset, "--resolution", "256", "-o", out)
    assert huge.code == 2 and huge.err.count("\n") == 1 and "no plan fits" in huge.err
    assert not out.exists()


@pytest.mark.slow
def test_plan_chosen_for_cpu2_runs_with_pfrun(pfplan, pfrun, tmp_path):
    plan_file = tmp_path / "plan.json"
    found = pfplan("search", "--topology", "cpu2", "--model", "pixart-tiny", "--steps", "4", "--runnable-only",
                   "-o", plan_file)
    assert found.code == 0, found.err
    ran = pfrun("--plan", plan_file)
    assert ran.code == 0, ran.err
