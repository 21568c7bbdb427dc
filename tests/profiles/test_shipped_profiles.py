"""Shipped profiles: each loads for its model, says how it was made, and is documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from profiles.catalog.models import load_model
from profiles.costs.profile_format import load_profile, shipped_profiles
from profiles.costs.profiled import load_profiled_cost_model

DOCS = Path(__file__).resolve().parents[2] / "docs" / "profiles.md"


def test_measured_profiles_exist_for_every_tiny_preset() -> None:
    names = shipped_profiles()
    for tiny in ("pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny", "hunyuan-tiny"):
        assert f"{tiny}-cpu" in names
    for gpu in ("a100-pcie", "l40", "h100-sxm"):
        assert f"pixart-alpha-{gpu}" in names and f"flux-dev-{gpu}" in names


@pytest.mark.parametrize("name", shipped_profiles())
def test_shipped_profile_loads_and_records_its_command(name: str) -> None:
    profile = load_profile(name)
    if profile.model is None:  # a links profile
        assert profile.provenance.command.startswith("pfplan profile links --nprocs")
        assert profile.provenance.command in DOCS.read_text()
        assert profile.links and all(f.latency_us >= 0 and f.bandwidth_gb_s > 0 for f in profile.links)
        return
    model = load_model(profile.model)
    cost = load_profiled_cost_model(name, model, gpu_name=profile.device)
    assert cost.name == f"profile:{name}.json"
    kind = profile.provenance.kind
    command = profile.provenance.command
    if kind == "measured":
        assert command.startswith(f"pfplan profile compute --model {model.name} --device cpu")
        assert profile.software.torch and profile.software.diffusers and profile.software.threads == 1
    elif kind == "analytic":
        assert command.startswith(f"pfplan profile analytic --gpu {profile.device} --model {model.name}")
    else:
        assert profile.provenance.calibration.command.startswith("pfplan profile calibrate")
    assert command.endswith(f"profiles/data/profiles/{name}.json") or kind == "calibrated"
    assert command in DOCS.read_text() or kind != "measured"
    tokens = model.image_tokens(model.default_resolution)
    for kind_name in ("embed", *model.arch.block_kinds()[:1], "final"):
        from profiles.costs.cost_model import LayerShape

        assert cost.layer_time_s(LayerShape(kind_name, tokens, tokens)) > 0
