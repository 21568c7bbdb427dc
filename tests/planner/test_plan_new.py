"""``pfplan plan new``: a hand-written plan is checked by the plan rules and carries what the search gives."""

from __future__ import annotations

import json

from simulator.plan import ParallelPlan


def test_plan_new_writes_a_plan_that_validate_and_simulate_accept(pfplan, tmp_path):
    out = tmp_path / "plan.json"
    result = pfplan("plan", "new", "--model", "pixart-tiny", "--topology", "cpu2",
                    "--parallel", "pipefusion=2,patches=4", "-o", out)
    assert result.code == 0, result.err
    plan = ParallelPlan.model_validate_json(out.read_text())
    assert plan.degrees.label() == "pipefusion2" and plan.patches == 4 and plan.warmup_steps == 1
    assert plan.stage_split is not None and sum(plan.stage_split) == 4
    assert plan.placement == ["node0/rank0", "node0/rank1"]
    assert plan.provenance is not None and "pfplan plan new" in plan.provenance.command
    assert pfplan("plan", "validate", out).code == 0
    simulated = pfplan("simulate", "--plan", out, "--json")
    assert simulated.code == 0, simulated.err
    assert json.loads(simulated.out)["prediction"]["latency_s"] == plan.prediction.latency_s


def test_plan_new_says_when_pfrun_cannot_run_the_plan(pfplan, tmp_path):
    out = tmp_path / "plan.json"
    # 1040 px: a 65×65 token grid; M = 2 gives patches of 33 and 32 rows: the rules check the smaller
    # (2080 tokens), pfrun also needs the larger's 2145 tokens to split over the 2 Ulysses ranks
    result = pfplan("plan", "new", "--model", "pixart-alpha", "--topology", "pcie8", "--resolution", "1040",
                    "--parallel", "pipefusion=2,ulysses=2,patches=2", "-o", out)
    assert result.code == 0, result.err
    from profiles.catalog.models import load_model
    from simulator.runnable import unrunnable_reason

    plan = ParallelPlan.model_validate_json(out.read_text())
    reason = unrunnable_reason(plan, load_model("pixart-alpha"))
    assert reason is not None and "2145 tokens" in reason
    assert plan.notes == ["written by hand with pfplan plan new", f"pfrun cannot run it yet: {reason}"]
    assert reason in result.out


def test_plan_new_refuses_a_broken_spec_in_one_line_and_writes_nothing(pfplan, tmp_path):
    out = tmp_path / "plan.json"
    result = pfplan("plan", "new", "--model", "pixart-alpha", "--topology", "pcie8",
                    "--parallel", "ulysses=3", "-o", out)
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1 and "ulysses(3) does not divide heads(16)" in result.err
    assert not out.exists()


def test_plan_new_never_overwrites_its_input(pfplan, tmp_path):
    from profiles.topology.format import TOPOLOGIES_DIR

    topology = tmp_path / "t.yaml"
    topology.write_text((TOPOLOGIES_DIR / "cpu2.yaml").read_text())
    before = topology.read_bytes()
    result = pfplan("plan", "new", "--model", "pixart-tiny", "--topology", topology,
                    "--parallel", "pipefusion=2", "-o", topology)
    assert result.code == 2 and "also an input" in result.err
    assert topology.read_bytes() == before
