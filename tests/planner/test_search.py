"""The search: every plan it returns is valid and fits; impossible jobs fail with one clear line."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from planner.errors import PlannerError
from planner.search import SearchSettings, search
from profiles.costs.selection import cost_model_for, dtype_bytes_of
from profiles.catalog.models import load_model
from profiles.topology.format import shipped_topologies
from profiles.topology.graph import load_cluster
from simulator.memory import memory_per_device
from simulator.plan import validate
from profiles.catalog.gpus import get_gpu
from tests.planner.presets import HUGE

MODELS = ["pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny", "hunyuan-tiny", "pixart-alpha", "dit-xl-2",
          "sd3-medium", "flux-dev", "hunyuan-dit"]
QUICK = SearchSettings(simulate_top=3, placement_top=1)


def run(model_name: str, topology: str, resolution: int, steps: int = 4, **kw):
    model = load_model(model_name)
    cluster = load_cluster(topology)
    gpu = cluster.device_gpu[cluster.devices[0]]
    result = search(model, cluster, cost_model_for(model, gpu), height_px=resolution, width_px=resolution,
                    steps=steps, settings=kw.pop("settings", QUICK), topology_name=topology, **kw)
    return model, cluster, result


def assert_valid_and_fits(model, cluster, result):
    dtype = dtype_bytes_of(cost_model_for(model, cluster.device_gpu[cluster.devices[0]]))
    for cand in result.ranked:
        validate(cand.plan, model, cluster)
        for device, mem in memory_per_device(cand.plan, model, cluster, dtype_bytes=dtype).items():
            assert mem.total <= get_gpu(cluster.device_gpu[device]).memory_bytes, (cand.plan.degrees.label(), device)
        if cand.prediction is not None:
            for device, peak in cand.prediction.peak_memory_bytes.items():
                assert peak <= cand.prediction.memory_capacity_bytes.get(device, peak)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_name=st.sampled_from(MODELS), topology=st.sampled_from(shipped_topologies()),
       scale=st.sampled_from([1, 2]))
def test_every_returned_plan_is_valid_and_fits(model_name, topology, scale):
    model = load_model(model_name)
    resolution = (256 if model.tiny else 512) * scale
    try:
        model, cluster, result = run(model_name, topology, resolution)
    except PlannerError as exc:
        assert "no plan fits" in exc.one_line() or "no valid plan" in exc.one_line()
        return
    assert result.ranked and result.best.simulated
    assert_valid_and_fits(model, cluster, result)
    assert all(c.lost_because for c in result.ranked[1:])


def test_ranked_best_first_by_simulated_latency():
    _, _, result = run("pixart-alpha", "pcie8", 1024, steps=20, settings=SearchSettings(simulate_top=6))
    simulated = [c for c in result.ranked if c.simulated]
    assert [c.latency_s for c in simulated] == sorted(c.latency_s for c in simulated)
    assert result.baseline_latency_s and result.baseline_latency_s > result.best.latency_s


def test_throughput_objective_counts_data_replicas():
    _, cluster, result = run("pixart-alpha", "pcie8", 1024, steps=20,
                             settings=SearchSettings(objective="throughput", simulate_top=6))
    best = result.best
    assert best.throughput_images_per_s == pytest.approx(best.plan.degrees.data / best.latency_s)
    assert best.plan.world_size == len(cluster.devices)  # idle GPUs never raise throughput


def test_runnable_only_keeps_only_runnable_plans():
    from simulator.runnable import RUNNABLE_AXES

    model, _, result = run("pixart-alpha", "h100-nvlink8", 1024, steps=20,
                           settings=SearchSettings(simulate_top=4, runnable_only=True))
    assert all(c.runnable_reason is None for c in result.ranked)
    assert all(set(c.plan.degrees.active()) <= set(RUNNABLE_AXES) for c in result.ranked)


def test_max_gpus_bounds_the_plans():
    _, _, result = run("pixart-alpha", "pcie8", 1024, steps=20, settings=SearchSettings(max_devices=2, simulate_top=4))
    assert max(c.plan.world_size for c in result.ranked) <= 2



def test_a_model_that_fits_nowhere_is_one_clear_error(tmp_path):
    preset = tmp_path / "huge.yaml"
    preset.write_text(HUGE)
    with pytest.raises(PlannerError) as info:
        run(str(preset), "t4x4", 256)
    line = info.value.one_line()
    assert "no plan fits huge-one-block" in line and "GB >" in line and "\n" not in line


def test_pipeline_plans_carry_the_balanced_split_and_placements_were_compared():
    from planner.stage_split import choose_split

    model, cluster, result = run("flux-dev", "pcie8", 1024, steps=28,
                                 settings=SearchSettings(simulate_top=8, runnable_only=True))
    cost = cost_model_for(model, "l40")
    piped = [c for c in result.ranked if c.plan.degrees.pipefusion > 1]
    assert piped
    for c in piped:
        assert c.plan.stage_split == choose_split(c.plan, model, cost)
        assert len(c.plan.placement) == c.plan.world_size
    assert {c.placement_name for c in result.ranked if c.simulated} <= {"greedy", "grouped", "topology", "reversed"}
