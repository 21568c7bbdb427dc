"""``pfplan topology calibrate``: the fit recovers known efficiencies, the shipped figures are its output,
and bad measurement files fail in one line without writing anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from planner.topology_calibration import CalibrationWarning, best_on_grid, calibrate_topology
from profiles.costs.analytic import AnalyticCostModel
from profiles.costs.selection import cost_model_for
from profiles.catalog.measured_runs import MeasuredRun, MeasuredRuns, load_measured_runs
from profiles.catalog.models import load_model
from profiles.topology.graph import load_cluster
from simulator.engine import simulate
from simulator.plan import ParallelPlan, parse_parallel_spec
from tests.planner.test_bad_input import assert_one_line_error
from tests.simulator.fakes import with_communication

PIXART = load_model("pixart-alpha")
RUNS = [("tensor=4", 1024), ("ulysses=4", 2048), ("tensor=2", 2048), ("distrifusion=4,warmup=1", 1024),
        ("distrifusion=2,warmup=1", 2048), ("ring=4", 1024), ("serial=1", 1024)]


def synthetic_runs(bandwidth: float, overlap: float) -> MeasuredRuns:
    """What a100-pcie4 would measure if its efficiencies were these (the simulator as ground truth)."""
    truth = with_communication(load_cluster("a100-pcie4"), bandwidth=bandwidth, overlap=overlap)
    cost = AnalyticCostModel.for_gpu(PIXART, "a100-pcie")
    runs = []
    for spec, px in RUNS:
        plan = ParallelPlan(model="pixart-alpha", height_px=px, width_px=px, steps=20, **parse_parallel_spec(spec))
        runs.append(MeasuredRun(parallel=spec, resolution=px, steps=20,
                                latency_s=simulate(plan, PIXART, truth, cost).latency_s))
    return MeasuredRuns(model="pixart-alpha", source="synthetic: simulated with known efficiencies", runs=runs)


@pytest.mark.parametrize("bandwidth, overlap", [(0.5, 0.3), (0.25, 0.55)])
def test_the_fit_recovers_the_efficiencies_that_made_the_runs(bandwidth, overlap):
    ideal = with_communication(load_cluster("a100-pcie4")).topology
    result = calibrate_topology(ideal, PIXART, AnalyticCostModel.for_gpu(PIXART, "a100-pcie"),
                                synthetic_runs(bandwidth, overlap), file="runs.yaml", source="test")
    assert result.communication.bandwidth_efficiency == pytest.approx(bandwidth, abs=0.006)
    assert result.communication.overlap_efficiency == pytest.approx(overlap, abs=0.03)
    assert result.fitted == ["bandwidth_efficiency", "overlap_efficiency"]
    assert result.rms_log_error(True) < 0.01 < result.rms_log_error(False)
    assert [c.kind for c in result.checks] == ["blocking"] * 3 + ["overlapped"] * 3 + ["compute"]


def test_runs_count_for_what_their_prediction_depends_on_not_for_their_degrees():
    """A one-step DistriFusion run has no stale K/V to overlap: its gathers block, so it fits bandwidth."""
    ideal = with_communication(load_cluster("a100-pcie4")).topology
    cost = AnalyticCostModel.for_gpu(PIXART, "a100-pcie")
    runs = MeasuredRuns(model="pixart-alpha", source="made up", runs=[
        MeasuredRun(parallel=spec, resolution=1024, steps=steps, latency_s=1.0)
        for spec, steps in (("serial=1", 20), ("data=2", 20), ("cfg=2", 20), ("tensor=2", 20),
                            ("distrifusion=4,warmup=1", 1), ("distrifusion=4,warmup=1", 20), ("ring=2", 20))])
    with pytest.warns(CalibrationWarning):
        result = calibrate_topology(ideal, PIXART, cost, runs, file="runs.yaml", source="test")
    # cfg=2 swaps one prediction per step: too few bytes for the fit to see
    assert [c.kind for c in result.checks] == ["compute", "compute", "compute", "blocking", "blocking",
                                               "overlapped", "overlapped"]


def test_a_flat_error_reports_the_range_and_keeps_its_highest_value():
    assert best_on_grid(lambda x: max(0.0, 0.5 - x), 0.0, 1.0) == (1.0, (0.5, 1.0))
    assert best_on_grid(lambda x: (x - 0.3) ** 2, 0.0, 1.0) == (0.3, (0.3, 0.3))


def test_a_value_on_the_edge_of_its_range_is_warned_about():
    runs = synthetic_runs(1.0, 1.0)
    faster = runs.model_copy(update={"runs": [r.model_copy(update={"latency_s": r.latency_s * 0.5})
                                              for r in runs.runs]})
    ideal = with_communication(load_cluster("a100-pcie4")).topology
    with pytest.warns(CalibrationWarning, match="bandwidth_efficiency hit the top of its range"):
        calibrate_topology(ideal, PIXART, AnalyticCostModel.for_gpu(PIXART, "a100-pcie"), faster,
                           file="runs.yaml", source="test")


def test_a_number_no_run_sees_keeps_its_value_and_its_source():
    previous = with_communication(load_cluster("a100-pcie4"), bandwidth=0.7, overlap=0.4).topology
    previous = previous.model_copy(update={"communication": previous.communication.model_copy(
        update={"source": "an earlier calibration"})})
    blocking_only = synthetic_runs(0.5, 1.0)
    blocking_only = blocking_only.model_copy(update={"runs": blocking_only.runs[:3]})
    result = calibrate_topology(previous, PIXART, AnalyticCostModel.for_gpu(PIXART, "a100-pcie"), blocking_only,
                                file="runs.yaml", source="test")
    assert result.fitted == ["bandwidth_efficiency"]
    assert result.communication.overlap_efficiency == 0.4
    assert "Kept overlap_efficiency from before: an earlier calibration" in result.communication.source


def test_the_shipped_pcie_figures_are_what_the_shipped_calibration_command_fits():
    """a100-pcie4's communication block is the output of its recorded command; pcie8 and l20x8 borrow it."""
    shipped = load_cluster("a100-pcie4").topology.communication
    assert "pfplan topology calibrate" in shipped.source and "pixart-alpha-a100-pcie4-published" in shipped.source
    runs, _ = load_measured_runs("pixart-alpha-a100-pcie4-published")
    assert not [r for r in runs.runs if "pipefusion" in r.parallel]  # held out: its rank is a prediction
    cost = cost_model_for(PIXART, "a100-pcie", "pixart-alpha-a100-pcie-calibrated")
    refit = calibrate_topology(load_cluster("a100-pcie4").topology, PIXART, cost, runs, file="x", source="x")
    assert (refit.communication.bandwidth_efficiency, refit.communication.overlap_efficiency) == \
        (shipped.bandwidth_efficiency, shipped.overlap_efficiency)
    for name in ("pcie8", "l20x8"):
        borrowed = load_cluster(name).topology.communication
        assert (borrowed.bandwidth_efficiency, borrowed.overlap_efficiency) == \
            (shipped.bandwidth_efficiency, shipped.overlap_efficiency)
        assert "Borrowed" in borrowed.source


def write_runs(path: Path, runs: list[dict], **top: object) -> Path:
    doc = {"schema_version": 1, "model": "pixart-alpha", "source": "test timings", "runs": runs, **top}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_cli_writes_a_calibrated_topology_that_loads_and_says_where_it_came_from(pfplan, tmp_path):
    runs = synthetic_runs(0.5, 0.3)
    measured = write_runs(tmp_path / "runs.yaml", [r.model_dump(exclude_defaults=True) for r in runs.runs])
    out = tmp_path / "mine.yaml"
    result = pfplan("topology", "calibrate", "--topology", "a100-pcie4", "--measurements", measured,
                    "-o", out, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["communication"]["bandwidth_efficiency"] == pytest.approx(0.5, abs=0.006)
    assert len(report["runs"]) == len(RUNS) and report["rms_log_error"]["after"] < 0.01
    comm = load_cluster(str(out)).topology.communication
    assert comm.bandwidth_efficiency == report["communication"]["bandwidth_efficiency"]
    assert "pfplan topology calibrate --topology a100-pcie4" in comm.source and "test timings" in comm.source
    table = pfplan("topology", "calibrate", "--topology", "a100-pcie4", "--measurements", measured, "-o", out)
    assert table.code == 0 and "bandwidth_efficiency 0.5" in table.out


RUN = {"parallel": "tensor=4", "resolution": 1024, "steps": 20, "latency_s": 4.9}
BAD = {
    "bad spec": ([{**RUN, "parallel": "tensor=x"}], {}, ["runs.yaml: runs[0].parallel:", "key=integer"]),
    "breaks a rule": ([{**RUN, "parallel": "ulysses=3"}], {}, ["runs.yaml runs[0]", "ulysses"]),
    "no source": ([RUN], {"source": ""}, ["runs.yaml: source:"]),
    "negative time": ([{**RUN, "latency_s": -1}], {}, ["runs.yaml: runs[0].latency_s:"]),
    "infinite time": ([{**RUN, "latency_s": float("inf")}], {}, ["runs.yaml: runs[0].latency_s:"]),
    "blank source": ([RUN], {"source": "   "}, ["runs.yaml: source:"]),
    "nothing to fit": ([{**RUN, "parallel": "serial=1"}], {}, ["runs.yaml: runs: no run's latency depends"]),
    "unknown model": ([RUN], {"model": "pixart-alfa"}, ["pixart-alpha"]),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_measurements_fail_in_one_line_and_write_nothing(pfplan, tmp_path, case):
    runs, top, needles = BAD[case]
    measured = write_runs(tmp_path / "runs.yaml", runs, **top)
    out = tmp_path / "out.yaml"
    result = pfplan("topology", "calibrate", "--topology", "a100-pcie4", "--measurements", measured, "-o", out)
    assert_one_line_error(result, *needles)
    assert not out.exists()


def test_communication_out_of_range_is_a_topology_error(pfplan, tmp_path):
    text = (Path(__file__).resolve().parents[2] / "profiles/data/topologies/pcie8.yaml").read_text()
    bad = tmp_path / "topo.yaml"
    bad.write_text(text.replace("bandwidth_efficiency: 0.5198", "bandwidth_efficiency: 0"))
    assert_one_line_error(pfplan("topology", "show", bad), "topo.yaml: communication.bandwidth_efficiency:")
