"""The measured trace: one compute event per (rank, step, patch, stage), in the shared format."""

from __future__ import annotations

from collections import Counter

from simulator.trace import load_trace

from .helpers import plan, run, write_plan
from tests.conftest import run_subprocess


def test_one_compute_event_per_rank_step_patch_stage():
    p = plan("pixart-tiny", steps=4, degrees={"pipefusion": 2, "cfg": 2}, patches=3, warmup_steps=1)
    result = run(p)
    trace = result.trace(model="pixart-tiny", plan=p, device="cpu")
    compute = [e for e in trace.work() if e.cat == "compute"]
    keys = Counter((e.tid, e.args["step"], e.args.get("patch"), e.args["stage"]) for e in compute)
    assert set(keys.values()) == {1}
    expected = {(rank, step, None if step < 1 else m, rank % 2)
                for rank in range(4) for step in range(4) for m in (range(1) if step < 1 else range(3))}
    assert set(keys) == expected
    assert trace.metadata.source == "measured"
    assert all(e.dur >= 0 and e.ts >= 0 for e in trace.work())
    sends = [e for e in trace.work() if e.cat == "send"]
    assert sends and all(e.args["bytes"] > 0 and "peer" in e.args for e in sends)


def test_pfrun_writes_a_trace_file(tmp_path):
    plan_file = write_plan(tmp_path / "plan.json", plan("flux-tiny", steps=2, degrees={"pipefusion": 2},
                                                        patches=2, warmup_steps=1))
    res = run_subprocess("runtime", "--plan", plan_file, "--trace", tmp_path / "t.json", timeout=120)
    assert res.code == 0, res.err
    trace = load_trace(tmp_path / "t.json")
    assert trace.ranks() == [0, 1]
    assert trace.metadata.latency_s and trace.metadata.latency_s > 0
    assert sum(e.cat == "compute" for e in trace.work()) == 2 * (1 + 2)
