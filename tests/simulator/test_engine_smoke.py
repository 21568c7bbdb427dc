"""Every strategy and the main hybrids simulate on a shipped topology and give sane results."""

import pytest

from profiles.costs import cost_model_for
from profiles.models import load_model
from profiles.topology_graph import load_cluster
from simulator.engine import simulate
from simulator.estimate import estimate_latency_s
from simulator.memory import memory_per_device
from simulator.plan import ParallelPlan, parse_parallel_spec

SPECS = ["serial=1", "pipefusion=4,patches=8,warmup=1", "ulysses=4", "ring=4", "tensor=4",
         "distrifusion=4,warmup=1", "cfg=2,pipefusion=2,patches=4,warmup=1", "ulysses=2,ring=2",
         "data=2,pipefusion=2,patches=2,warmup=1"]


@pytest.mark.parametrize("spec", SPECS)
def test_strategies_simulate(spec):
    model, cluster = load_model("pixart-alpha"), load_cluster("a100-pcie4")
    cm = cost_model_for(model, "a100-pcie")
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=4, **parse_parallel_spec(spec))
    result = simulate(plan, model, cluster, cm, record_trace=True)
    p = result.prediction
    assert p.latency_s > 0
    assert sum(p.breakdown_s.values()) == pytest.approx(p.latency_s, rel=1e-9)
    assert result.fits and not result.oom
    assert set(p.peak_memory_bytes) == set(plan.devices(cluster))
    assert all(0 < u <= 1 + 1e-9 for u in result.utilisation.values())
    assert result.trace is not None and result.trace.ranks() == list(range(plan.world_size))
    assert estimate_latency_s(plan, model, cluster, cm) > 0
    assert memory_per_device(plan, model, cluster)[cluster.devices[0]].total == p.peak_memory_bytes[cluster.devices[0]]
