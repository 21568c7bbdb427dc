"""pfrun refuses, before starting any rank, a plan its topology cannot hold and outputs it cannot write."""

from __future__ import annotations

import pytest

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
    from profiles.topology.format import TOPOLOGIES_DIR

    (tmp_path / "mine.yaml").write_text((TOPOLOGIES_DIR / "cpu2.yaml").read_text())
    p = plan("dit-tiny", steps=1, degrees={"data": 4}, topology="mine.yaml")
    res = pfrun("--plan", write_plan(tmp_path / "plan.json", p), "--device", "cpu")
    assert res.code == 2 and "4 ranks" in res.err and "2 devices" in res.err


def test_unknown_topology_is_one_line_and_exit_2(tmp_path, pfrun):
    p = plan("dit-tiny", steps=1, topology="cpu3")
    res = pfrun("--plan", write_plan(tmp_path / "plan.json", p), "--device", "cpu")
    assert res.code == 2 and res.err.count("\n") == 1
    assert "topology" in res.err and "cpu3" in res.err and "cpu2" in res.err


def _serial_plan(tmp_path):
    return write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=1))


@pytest.mark.parametrize("flag", ["--out", "--trace"])
def test_an_output_that_is_a_directory_is_refused_before_the_run(tmp_path, pfrun, flag):
    plan_file = _serial_plan(tmp_path)
    folder = tmp_path / "folder"
    folder.mkdir()
    other = ["--trace", tmp_path / "t.json"] if flag == "--out" else ["--out", tmp_path / "ok.png"]
    res = pfrun("--plan", plan_file, flag, folder, *other, "--device", "cpu")
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    assert "is a directory" in res.err and flag in res.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "plan.json"]  # nothing written


def test_an_output_under_a_file_is_refused_before_the_run(tmp_path, pfrun):
    plan_file = _serial_plan(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    res = pfrun("--plan", plan_file, "--out", tmp_path / "ok.png", "--trace", tmp_path / "notes.txt" / "t.json",
                "--device", "cpu")
    assert res.code == 2 and res.err.count("\n") == 1 and "not a directory" in res.err
    assert not (tmp_path / "ok.png").exists()


def test_replica_images_are_checked_too(tmp_path, pfrun):
    (tmp_path / "img-1.png").mkdir()
    plan_file = write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=1, degrees={"data": 2}))
    res = pfrun("--plan", plan_file, "--out", tmp_path / "img.png", "--device", "cpu")
    assert res.code == 2 and "img-1.png" in res.err and "is a directory" in res.err


def test_out_and_trace_on_one_file_are_refused(tmp_path, pfrun):
    res = pfrun("--plan", _serial_plan(tmp_path), "--out", tmp_path / "x", "--trace", tmp_path / "x",
                "--device", "cpu")
    assert res.code == 2 and "same file" in res.err


def test_outputs_are_written_all_or_nothing(tmp_path):
    """The second output cannot be staged (its folder became a file after the check): neither is written."""
    from runtime.errors import RuntimeFailure
    from runtime.outputs import write_all

    (tmp_path / "blocker").write_text("x")
    with pytest.raises(RuntimeFailure, match="no output written"):
        write_all([(tmp_path / "a.png", b"png"), (tmp_path / "blocker" / "t.json", b"{}")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_an_output_in_a_missing_folder_is_refused_before_the_run(tmp_path, pfrun):
    """Issue 16: a missing folder is refused (a typo in a path is not silently created), naming the option."""
    res = pfrun("--plan", _serial_plan(tmp_path), "--out", tmp_path / "a" / "b" / "img.png",
                "--trace", tmp_path / "c" / "t.json", "--device", "cpu")
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    assert "--out" in res.err and "does not exist" in res.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_outputs_get_the_permissions_of_a_plainly_created_file(tmp_path, pfrun):
    """Staged through mkstemp (owner-only), the image and trace still end up as umask says."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        res = pfrun("--plan", _serial_plan(tmp_path), "--out", tmp_path / "img.png", "--trace", tmp_path / "t.json",
                    "--device", "cpu")
    finally:
        os.umask(old)
    assert res.code == 0, res.err
    for name in ("img.png", "t.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
