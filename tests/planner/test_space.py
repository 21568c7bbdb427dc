"""The search space: every shape obeys the plan rules and the shapes the rules allow are there."""

from __future__ import annotations

import pytest

from planner.space import SpaceOptions, degree_options, patch_options, plan_shapes
from profiles.catalog.models import load_model
from simulator.plan import Degrees, violations


def labels(model: str, res: int, devices: int, **kw) -> set[str]:
    m = load_model(model)
    return {p.degrees.label() for p in plan_shapes(m, SpaceOptions(res, res, 20, devices, **kw))}


def test_every_shape_passes_the_rules_and_uses_at_most_the_devices():
    model = load_model("pixart-alpha")
    shapes = list(plan_shapes(model, SpaceOptions(2048, 2048, 20, 8)))
    assert shapes
    for plan in shapes:
        assert violations(plan, model) == []
        assert 1 <= plan.world_size <= 8


def test_fewer_devices_and_the_published_hybrids_are_in_the_space():
    found = labels("pixart-alpha", 1024, 8)
    for label in ("serial", "pipefusion4", "pipefusion8", "cfg2×pipefusion4", "ulysses8", "ring2×ulysses4",
                  "cfg2", "data8", "tensor8", "distrifusion8", "cfg2×distrifusion4", "pipefusion2×ulysses4"):
        assert label in found, label


def test_cfg_only_for_cfg_models_and_heads_divisible():
    flux = labels("flux-dev", 1024, 8)  # no CFG; 24 heads
    assert not any("cfg" in label for label in flux)
    assert "ulysses8" in flux and "ulysses4" in flux
    pixart = labels("pixart-alpha", 1024, 8)  # 16 heads
    assert "ulysses8" in pixart
    model = load_model("pixart-alpha")
    assert all(16 % d.ulysses == 0 for d in degree_options(6, model, 64))
    assert Degrees(ulysses=3, pipefusion=2) not in list(degree_options(6, model, 64))


def test_distrifusion_and_tensor_only_beside_cfg_and_data():
    for label in labels("pixart-alpha", 1024, 8):
        parts = {p.rstrip("0123456789") for p in label.split("×")}
        for exclusive in ("distrifusion", "tensor"):
            if exclusive in parts:
                assert parts <= {exclusive, "cfg", "data"}, label


def test_stages_never_exceed_layers():
    model = load_model("pixart-tiny")
    shapes = list(plan_shapes(model, SpaceOptions(256, 256, 4, 8)))
    assert all(p.degrees.pipefusion <= model.layers for p in shapes)


def test_patch_counts_and_warmup_floor():
    assert patch_options(Degrees(pipefusion=4), rows=128) == [2, 4, 8, 16, 32]
    assert patch_options(Degrees(pipefusion=8), rows=16) == [2, 4, 8, 16]
    assert patch_options(Degrees(ulysses=2), rows=128) == [1]
    model = load_model("pixart-alpha")
    for plan in plan_shapes(model, SpaceOptions(1024, 1024, 20, 4, min_warmup=3)):
        stale = plan.degrees.pipefusion > 1 or plan.degrees.distrifusion > 1
        assert plan.warmup_steps == (3 if stale else 0)
        assert plan.patches <= model.token_grid(1024, 1024)[0]


@pytest.mark.parametrize("devices", [1, 2, 3])
def test_small_counts(devices):
    found = labels("dit-tiny", 256, devices)
    assert "serial" in found
    if devices >= 2:
        assert "pipefusion2" in found and "cfg2" in found
