"""``pfplan simulate`` end to end: tables, JSON, trace file, plan files, one-line errors."""

from __future__ import annotations

import json


from simulator.plan import Degrees, ParallelPlan
from simulator.trace import load_trace


def test_simulate_prints_latency_breakdown_memory_traffic(pfplan):
    r = pfplan("simulate", "--model", "pixart-alpha", "--resolution", "1024", "--steps", "20", "--topology", "pcie8",
               "--parallel", "pipefusion=8,patches=16,warmup=1")
    assert r.code == 0, r.err
    assert "predicted latency:" in r.out and "analytic:l40" in r.out
    for word in ("warmup", "compute", "bubble", "exposed_communication", "node0/gpu7", "capacity", "utilisation",
                 "bytes moved by route class", "SYS"):
        assert word in r.out


def test_simulate_json_and_trace(pfplan, tmp_path):
    trace = tmp_path / "trace.json"
    r = pfplan("simulate", "--model", "pixart-tiny", "--steps", "3", "--topology", "cpu2",
               "--parallel", "pipefusion=2,patches=2,warmup=1", "--trace", trace, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["fits"] is True and data["prediction"]["latency_s"] > 0
    assert set(data["memory_bytes"]) == {"node0/rank0", "node0/rank1"}
    loaded = load_trace(trace)
    assert loaded.metadata.source == "simulated" and loaded.ranks() == [0, 1]
    assert loaded.metadata.latency_s == data["prediction"]["latency_s"]
    computes = [e for e in loaded.work() if e.cat == "compute"]
    assert {(e.args["step"], e.args.get("patch"), e.args["stage"]) for e in computes} >= {(0, None, 0), (2, 1, 1)}


def test_simulate_a_plan_file(pfplan, tmp_path):
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=20,
                        degrees=Degrees(cfg=2, pipefusion=2), patches=4, warmup_steps=1, topology="a100-pcie4")
    path = tmp_path / "plan.json"
    path.write_text(plan.model_dump_json())
    r = pfplan("simulate", "--plan", path, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["plan"]["degrees"]["cfg"] == 2


def test_bad_input_is_one_line_and_exit_2(pfplan):
    r = pfplan("simulate", "--model", "pixart-alpha", "--topology", "pcie8", "--parallel", "ulysses=3")
    assert r.code == 2 and r.err.count("\n") == 1 and "ulysses(3) does not divide heads(16)" in r.err
    r = pfplan("simulate", "--model", "pixart-alpha", "--topology", "pcie8", "--parallel", "bogus=2")
    assert r.code == 2 and "unknown key 'bogus'" in r.err
    r = pfplan("simulate", "--model", "pixart-alpha", "--topology", "pcie8")
    assert r.code == 2 and "exactly one of --plan" in r.err
    r = pfplan("simulate", "--model", "pixart-alpha", "--topology", "pcie8", "--parallel", "ulysses=2",
               "--network", "bogus")
    assert r.code == 2 and "--network: unknown model 'bogus'; models: fair, fifo" in r.err
    r = pfplan("simulate", "--model", "pixart-alpha", "--parallel", "cfg=3")
    assert r.code == 2 and r.err.count("\n") == 1


def test_oom_is_flagged(pfplan):
    r = pfplan("simulate", "--model", "flux-dev", "--resolution", "1024", "--topology", "t4x4", "--parallel", "ulysses=4")
    assert r.code == 0
    assert "OOM node0/gpu0: needs" in r.out


def test_both_network_models_run(pfplan):
    out = {}
    for model in ("fair", "fifo"):
        r = pfplan("simulate", "--model", "pixart-alpha", "--topology", "a100-pcie4", "--parallel",
                   "pipefusion=2,ring=2,patches=4,warmup=1", "--network", model, "--json")
        assert r.code == 0, r.err
        out[model] = json.loads(r.out)["prediction"]["latency_s"]
    assert out["fair"] > 0 and out["fifo"] > 0


def test_simulate_as_a_real_process(tmp_path):
    from tests.conftest import run_subprocess

    trace = tmp_path / "t.json"
    r = run_subprocess("planner", "simulate", "--model", "pixart-alpha", "--topology", "a100-pcie4",
                       "--parallel", "pipefusion=4,patches=8,warmup=1", "--steps", "4", "--trace", trace, timeout=120)
    assert r.code == 0, r.err
    assert "predicted latency:" in r.out and trace.exists()
    bad = run_subprocess("planner", "simulate", "--model", "pixart-alpha", "--topology", "nope",
                         "--parallel", "ulysses=2", timeout=120)
    assert bad.code == 2 and bad.err.count("\n") == 1 and "Traceback" not in bad.err


def test_measured_links_from_a_profile(pfplan):
    base = ["simulate", "--model", "pixart-tiny", "--topology", "cpu2", "--parallel", "pipefusion=2,patches=2,warmup=1",
            "--json"]
    plain = pfplan(*base)
    measured = pfplan(*base, "--links", "cpu2-links")
    assert plain.code == 0 and measured.code == 0, measured.err
    assert json.loads(measured.out)["prediction"]["latency_s"] != json.loads(plain.out)["prediction"]["latency_s"]


def test_links_need_the_profiler_or_a_links_profile(pfplan):
    r = pfplan("simulate", "--model", "pixart-tiny", "--topology", "cpu2", "--parallel", "ulysses=2",
               "--links", "no-such-profile")
    assert r.code == 2 and r.err.count("\n") == 1
