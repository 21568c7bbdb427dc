"""pfrun refuses, before starting any rank, a plan its topology cannot hold and outputs it cannot write."""

from __future__ import annotations

from .helpers import plan, write_plan


def test_plan_wider_than_its_topology_is_refused_before_any_rank_starts(tmp_path, pfrun):
    """data=16 placed on node0/rank0..15 of cpu2 (2 devices): one line, exit 2, nothing run."""
    p = plan("dit-tiny", steps=1, degrees={"data": 16}, topology="cpu2",
             placement=[f"node0/rank{i}" for i in range(16)])
    res = pfrun("--plan", write_plan(tmp_path / "plan.json", p), "--device", "cpu")
    assert res.code == 2, res.err
    assert res.err.count("\n") == 1
    assert "16 ranks" in res.err and "2 devices" in res.err and "unknown devices" in res.err


def test_plan_on_its_topology_runs(tmp_path, pfrun):
    p = plan("dit-tiny", steps=1, degrees={"data": 2}, topology="cpu2", placement=["node0/rank0", "node0/rank1"])
    res = pfrun("--plan", write_plan(tmp_path / "plan.json", p), "--device", "cpu")
    assert res.code == 0, res.err


def test_topology_file_next_to_the_plan_is_found(tmp_path, pfrun):
    from profiles.topology import TOPOLOGIES_DIR

    (tmp_path / "mine.yaml").write_text((TOPOLOGIES_DIR / "cpu2.yaml").read_text())
    p = plan("dit-tiny", steps=1, degrees={"data": 4}, topology="mine.yaml")
    res = pfrun("--plan", write_plan(tmp_path / "plan.json", p), "--device", "cpu")
    assert res.code == 2 and "4 ranks" in res.err and "2 devices" in res.err


def test_unknown_topology_is_one_line_and_exit_2(tmp_path, pfrun):
    p = plan("dit-tiny", steps=1, topology="cpu3")
    res = pfrun("--plan", write_plan(tmp_path / "plan.json", p), "--device", "cpu")
    assert res.code == 2 and res.err.count("\n") == 1
    assert "topology" in res.err and "cpu3" in res.err and "cpu2" in res.err
