"""Issue 16: one rule for relative paths inside a plan, and what Ctrl-C / SIGTERM print.

A plan's relative ``model`` and ``topology`` are read from the plan file's folder by every
command (plan validate, simulate --plan, pfrun --plan), whatever the working directory;
writers store them relative to the plan they write.
"""

from __future__ import annotations

import json
import signal

import pytest

from profiles.catalog.models import MODELS_DIR
from profiles.topology.format import TOPOLOGIES_DIR


@pytest.fixture
def plan_in_a_box(tmp_path, monkeypatch):
    """box/plan.json naming box/m.yaml and box/t.yaml by relative paths; the working directory is elsewhere."""
    box = tmp_path / "box"
    box.mkdir()
    (box / "m.yaml").write_text((MODELS_DIR / "dit-tiny.yaml").read_text().replace("name: dit-tiny", "name: mine"))
    (box / "t.yaml").write_text((TOPOLOGIES_DIR / "cpu2.yaml").read_text())
    plan = box / "plan.json"
    plan.write_text(json.dumps({"schema_version": 1, "model": "m.yaml", "topology": "t.yaml", "height_px": 128,
                                "width_px": 128, "steps": 1}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # decoys: files of the same names in the working directory must not be read
    (elsewhere / "m.yaml").write_text("broken: [\n")
    (elsewhere / "t.yaml").write_text("broken: [\n")
    monkeypatch.chdir(elsewhere)
    return plan


def test_plan_validate_and_simulate_read_a_plans_paths_from_its_folder(plan_in_a_box, pfplan):
    result = pfplan("plan", "validate", plan_in_a_box)
    assert result.code == 0 and "valid" in result.out and "mine" in result.out, result.err
    result = pfplan("simulate", "--plan", plan_in_a_box, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["plan"]["model"].endswith("box/m.yaml")


def test_pfrun_reads_a_plans_paths_from_its_folder(plan_in_a_box, pfrun, tmp_path):
    out = tmp_path / "elsewhere" / "img.png"
    result = pfrun("--plan", plan_in_a_box, "--out", out, "--device", "cpu", "--timeout", "30")
    assert result.code == 0, result.err
    assert out.is_file()


def test_a_written_plan_names_its_files_relative_to_itself(tmp_path, pfplan, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text((MODELS_DIR / "dit-tiny.yaml").read_text())
    (tmp_path / "out").mkdir()
    result = pfplan("plan", "new", "--model", "m.yaml", "--topology", "cpu2", "--parallel", "pipefusion=2",
                    "--resolution", "128", "-o", "out/plan.json")
    assert result.code == 0, result.err
    written = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert written["model"] == "../m.yaml" and written["topology"] == "cpu2"
    monkeypatch.chdir(tmp_path / "out")
    assert pfplan("plan", "validate", "plan.json").code == 0


def _signal_midway(monkeypatch, sig: int) -> None:
    """The signal arrives while ``topology show`` loads its topology."""
    import os

    import planner.commands_topology as topology

    def stop(*args, **kwargs):
        os.kill(os.getpid(), sig)  # run_app's handler raises here, where the command is
        raise AssertionError("the signal was not handled")
    monkeypatch.setattr(topology, "load_cluster", stop)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_is_one_line_and_exit_128_plus_it(pfplan, monkeypatch, sig, code):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _signal_midway(monkeypatch, sig)
    result = pfplan("topology", "show", "cpu2")
    assert result.code == code and result.err == "pfplan: interrupted\n"
    assert {s: signal.getsignal(s) for s in before} == before  # the previous handlers are back


def test_ctrl_c_with_debug_says_where_it_stopped(pfplan, monkeypatch):
    _signal_midway(monkeypatch, signal.SIGINT)
    result = pfplan("topology", "show", "cpu2", "--debug")
    assert result.code == 130
    assert "Traceback" in result.err and "in stop" in result.err  # the frame that was running
    assert result.err.splitlines()[-1] == "pfplan: interrupted (signal SIGINT)"


def test_a_signal_while_the_error_line_is_printed_does_not_replace_it(pfplan, monkeypatch):
    """A rank whose peer failed is SIGTERMed by torchrun while it prints its own error: the line
    still comes out, with its exit code, and no traceback (seen in CI once)."""
    import os

    import planner.commands_topology as topology
    from profiles import cli_support
    from profiles.errors import TopologyError

    def fail(*args, **kwargs):
        raise TopologyError("cpu2: something is wrong")
    monkeypatch.setattr(topology, "load_cluster", fail)
    printing = cli_support.err_console.print

    def print_after_a_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # what torchrun sends the surviving ranks
        return printing(*args, **kwargs)
    monkeypatch.setattr(cli_support.err_console, "print", print_after_a_signal)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    result = pfplan("topology", "show", "cpu2")
    assert result.err == "pfplan: error: cpu2: something is wrong\n"
    assert result.code == TopologyError("x").exit_code
    assert {s: signal.getsignal(s) for s in before} == before
