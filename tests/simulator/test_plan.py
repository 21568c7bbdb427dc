"""Plan rules: each rule is reported, and all violations come in one message."""

from __future__ import annotations

import pytest

from profiles.catalog.models import load_model
from profiles.topology.graph import load_cluster
from simulator.errors import PlanError
from simulator.plan import Degrees, ParallelPlan, even_split, parse_parallel_spec, validate, violations

PIXART = load_model("pixart-alpha")
FLUX = load_model("flux-dev")


def plan(**kw) -> ParallelPlan:
    base = dict(model="pixart-alpha", height_px=1024, width_px=1024, steps=20)
    return ParallelPlan(**{**base, **kw})


def test_valid_hybrid_plan_passes():
    p = plan(degrees=Degrees(cfg=2, pipefusion=4), patches=8, warmup_steps=1)
    validate(p, PIXART, load_cluster("pcie8"))
    assert p.devices(load_cluster("pcie8")) == [f"node0/gpu{i}" for i in range(8)]


def test_even_split():
    assert even_split(28, 8) == [4, 4, 4, 4, 3, 3, 3, 3]
    assert plan(degrees=Degrees(pipefusion=3)).stage_layers(PIXART) == [range(0, 10), range(10, 19), range(19, 28)]


@pytest.mark.parametrize("kw, model, needle", [
    (dict(degrees=Degrees(ulysses=3)), PIXART, "ulysses(3) does not divide heads(16)"),
    (dict(degrees=Degrees(tensor=5)), PIXART, "tensor(5) does not divide heads(16)"),
    (dict(model="flux-dev", degrees=Degrees(cfg=2)), FLUX, "flux-dev does not"),
    (dict(degrees=Degrees(pipefusion=2), stage_split=[10, 10]), PIXART, "sums to 20"),
    (dict(degrees=Degrees(pipefusion=2), stage_split=[28]), PIXART, "1 stages given for pipefusion(2)"),
    (dict(patches=65), PIXART, "65 patches do not fit 64 latent token rows"),
    (dict(warmup_steps=21), PIXART, "21 warm-up steps exceed steps(20)"),
    (dict(degrees=Degrees(pipefusion=29)), PIXART, "exceeds the model's 28 blocks"),
    (dict(degrees=Degrees(pipefusion=2), placement=["node0/gpu0"]), PIXART, "1 devices for 2 ranks"),
    (dict(degrees=Degrees(pipefusion=2), placement=["node0/gpu0", "node0/gpu0"]), PIXART, "used by several ranks"),
    (dict(degrees=Degrees(tensor=2, pipefusion=2)), PIXART, "tensor combines only with cfg and data"),
])
def test_each_rule(kw, model, needle):
    found = violations(plan(**kw), model)
    assert any(needle in v for v in found), found


def test_placement_must_name_existing_devices_and_fit_the_cluster():
    cluster = load_cluster("a100-pcie4")
    found = violations(plan(degrees=Degrees(pipefusion=8)), PIXART, cluster)
    assert any("topology has 4 devices" in v for v in found)
    found = violations(plan(degrees=Degrees(pipefusion=2), placement=["node0/gpu0", "node0/gpu9"]), PIXART, cluster)
    assert any("unknown devices node0/gpu9" in v for v in found)


def test_all_violations_in_one_message():
    with pytest.raises(PlanError) as info:
        validate(plan(degrees=Degrees(ulysses=3), warmup_steps=30), PIXART, file="p.json")
    line = info.value.one_line()
    assert line.startswith("p.json: ") and "ulysses(3)" in line and "warm-up" in line and "\n" not in line


def test_parallel_spec():
    assert parse_parallel_spec("pipefusion=8,patches=16,warmup=1") == {
        "degrees": {"pipefusion": 8}, "patches": 16, "warmup_steps": 1}
