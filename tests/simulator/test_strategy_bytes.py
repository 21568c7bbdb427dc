"""Each strategy moves the bytes its algorithm implies (the docs/references.md §1 communication column)."""

from __future__ import annotations

import pytest

from profiles.catalog.models import load_model
from profiles.topology.graph import load_cluster
from simulator.engine import simulate
from simulator.plan import Degrees, ParallelPlan
from tests.simulator.fakes import ConstantCost

PIXART = load_model("pixart-alpha")
S, H, L, DT = 4096, 1152, 28, 2  # 1024 px tokens, hidden, blocks, fp16
B = 2  # CFG batch
STEPS = 3
LATENT = S * 4 * 4 * DT  # tokens × 2×2 patch × 4 channels


def total_bytes(**kw) -> int:
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=STEPS, **kw)
    result = simulate(plan, PIXART, load_cluster("pcie8"), ConstantCost(1e-3))
    return sum(result.prediction.bytes_by_route_class.values())


OUTPUT = S * 4 * 8 * DT  # PixArt predicts noise and σ: 8 channels
"""What a sequence split gathers after the output layer, once per step: (n−1)/n of it to each of n ranks."""


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ulysses_four_tensors_all_to_all_per_block_and_the_output_per_step(n):
    expected = STEPS * (L * 4 * (n - 1) / n * S * H * B * DT + (n - 1) * OUTPUT)
    assert total_bytes(degrees=Degrees(ulysses=n)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n", [2, 4])
def test_tensor_parallel_three_ring_all_reduces_per_pixart_block(n):
    """Self-attention, cross-attention and MLP outputs: three row-split Linears, as pfrun shards them."""
    assert total_bytes(degrees=Degrees(tensor=n)) == pytest.approx(STEPS * L * 3 * 2 * (n - 1) * S * H * B * DT,
                                                                   rel=1e-6)


@pytest.mark.parametrize("n", [2, 4])
def test_ring_attention_passes_kv_around_the_ring_and_gathers_the_output(n):
    expected = STEPS * (L * 2 * (n - 1) * S * H * B * DT + (n - 1) * OUTPUT)
    assert total_bytes(degrees=Degrees(ring=n)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n", [2, 4])
def test_distrifusion_all_gathers_kv_per_block_and_the_output_per_step(n):
    expected = STEPS * (L * 2 * (n - 1) * S * H * B * DT + (n - 1) * S * 4 * 8 * DT)  # output: 8 channels (σ)
    assert total_bytes(degrees=Degrees(distrifusion=n), warmup_steps=1) == pytest.approx(expected, rel=1e-6)


def test_cfg_parallel_swaps_one_prediction_each_way_per_step():
    prediction = S * 4 * 8 * DT  # PixArt predicts noise and σ: 8 channels
    assert total_bytes(degrees=Degrees(cfg=2)) == STEPS * 2 * prediction


def test_data_parallel_replicas_do_not_talk():
    assert total_bytes(degrees=Degrees(data=4)) == 0


def test_pipefusion_traffic_does_not_grow_with_depth_or_patches():
    a = total_bytes(degrees=Degrees(pipefusion=4), patches=4, warmup_steps=1)
    b = total_bytes(degrees=Degrees(pipefusion=4), patches=16, warmup_steps=1)
    assert a == b == STEPS * (3 * S * H * B * DT + LATENT)
