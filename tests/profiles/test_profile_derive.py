"""Analytic profiles and calibration."""

from __future__ import annotations

import pytest

from profiles.costs.analytic import AnalyticCostModel
from profiles.costs.cost_model import LayerShape
from profiles.catalog.models import load_model
from profiles.costs.profile_derive import analytic_profile, calibrate, serial_layers, serial_prediction_s
from profiles.costs.profiled import ProfiledCostModel


def test_analytic_profile_holds_the_roofline_at_its_shapes() -> None:
    model = load_model("flux-dev")
    profile = analytic_profile(model, "h100-sxm", resolutions_px=(1024,), command="test")
    assert profile.provenance.kind == "analytic" and profile.provenance.analytic["max_efficiency"] > 0
    roofline = AnalyticCostModel.for_gpu(model, "h100-sxm", dtype_bytes=2)
    for kind, timings in profile.layers.items():
        for t in timings[:5]:
            shape = LayerShape(kind, t.query_tokens, t.kv_tokens, t.batch, t.tensor_shard)
            assert t.median_s == pytest.approx(roofline.layer_time_s(shape))
    assert {t.tensor_shard for t in profile.layers["flux_double_block"]} == {1, 2, 4, 8}


def test_serial_prediction_is_steps_times_the_layer_sum() -> None:
    model = load_model("pixart-alpha")
    cost = AnalyticCostModel.for_gpu(model, "a100-pcie")
    tokens = model.image_tokens(1024)
    per_step = sum(cost.layer_time_s(LayerShape(k, tokens, tokens, 2)) for k in serial_layers(model))
    assert len(serial_layers(model)) == 28 + 2
    assert serial_prediction_s(cost, model, resolution_px=1024, steps=20) == pytest.approx(20 * per_step)


def test_calibration_makes_the_serial_prediction_match_and_records_it() -> None:
    model = load_model("flux-dev")
    profile = analytic_profile(model, "h100-sxm", resolutions_px=(1024,), command="analytic cmd")
    calibrated = calibrate(profile, model, file="p.json", resolution_px=1024, steps=28, measured_serial_s=6.71,
                           command="calibrate cmd")
    cost = ProfiledCostModel.from_profile(calibrated, model, file="c.json")
    assert serial_prediction_s(cost, model, resolution_px=1024, steps=28) == pytest.approx(6.71, rel=1e-9)
    record = calibrated.provenance.calibration
    assert calibrated.provenance.kind == "calibrated" and record.previous_kind == "analytic"
    assert record.measured_serial_s == 6.71 and record.steps == 28 and record.batch == 1  # Flux: no CFG
    assert record.command == "calibrate cmd" and calibrated.provenance.command == "analytic cmd"
    before = ProfiledCostModel.from_profile(profile, model, file="p.json")
    assert record.predicted_serial_s == pytest.approx(serial_prediction_s(before, model, resolution_px=1024, steps=28))
    assert record.factor == pytest.approx(6.71 / record.predicted_serial_s)
