"""The profiled cost model: monotone interpolation, warned fallback, refusals by field name."""

from __future__ import annotations

import json
import math
import warnings

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from profiles.costs.cost_model import LayerShape
from profiles.errors import InputError
from profiles.catalog.models import load_model
from profiles.costs.profile_format import Profile, ProfileProvenance, SoftwareStack, Timing
from profiles.costs.profiled import (ProfileRangeWarning, ProfileStackWarning, ProfiledCostModel, Surface,
                               load_profiled_cost_model)

LEVELS = (64, 256, 1024)
SPLITS = (1, 2, 4, 8)


def timing(q: int, kv: int, seconds: float, batch: int = 1, shard: int = 1) -> Timing:
    return Timing(query_tokens=q, kv_tokens=kv, batch=batch, tensor_shard=shard, median_s=seconds, p10_s=seconds,
                  p90_s=seconds, min_s=seconds, max_s=seconds, repeats=1)


def synthetic(times: list[float] | None = None, *, model: str = "pixart-tiny") -> Profile:
    """Block timings at kv levels × patch splits (plus embed/final), in the given order."""
    shapes = [(kv // m, kv) for kv in LEVELS for m in SPLITS]
    times = times or [1e-6 * q * (1 + kv / 512) for q, kv in shapes]
    block = [timing(q, kv, t) for (q, kv), t in zip(shapes, times)]
    flat = [timing(kv, kv, 1e-6 * kv) for kv in LEVELS]
    return Profile(model=model, device="cpu", device_name="test", software=SoftwareStack(dtype="fp32"),
                   layers={"embed": flat, "pixart_block": block, "final": flat},
                   provenance=ProfileProvenance(kind="measured", command="test"))


def cost_model(profile: Profile) -> ProfiledCostModel:
    return ProfiledCostModel.from_profile(profile, load_model("pixart-tiny"), file="test.json")


def test_exact_at_measured_monotone_points() -> None:
    profile = synthetic()
    cost = cost_model(profile)
    for t in profile.layers["pixart_block"]:
        shape = LayerShape("pixart_block", t.query_tokens, t.kv_tokens)
        assert cost.layer_time_s(shape) == pytest.approx(t.median_s, rel=1e-9)


def test_between_levels_is_between_neighbours() -> None:
    cost = cost_model(synthetic())
    lo = cost.layer_time_s(LayerShape("pixart_block", 128, 256))
    hi = cost.layer_time_s(LayerShape("pixart_block", 128, 1024))
    mid = cost.layer_time_s(LayerShape("pixart_block", 128, 512))
    assert lo < mid < hi


def test_a_slow_reading_is_lowered_and_does_not_raise_bigger_shapes() -> None:
    """Load only slows a timing: a patch measured slower than a bigger one takes the bigger one's
    time, and the bigger patches keep their own (a running maximum would have raised them)."""
    shapes = [(kv // m, kv) for kv in LEVELS for m in SPLITS]
    clean = [1e-6 * q * (1 + kv / 512) for q, kv in shapes]
    noisy = list(clean)
    slow = shapes.index((64, 256))  # the 4-patch split of the 256-key level, read 5x too slow
    noisy[slow] *= 5
    cost = cost_model(synthetic(noisy))
    for q, kv in ((128, 256), (256, 256)):
        assert cost.layer_time_s(LayerShape("pixart_block", q, kv)) == pytest.approx(clean[shapes.index((q, kv))])
    assert cost.layer_time_s(LayerShape("pixart_block", 64, 256)) == pytest.approx(clean[shapes.index((128, 256))])
    assert cost.layer_time_s(LayerShape("pixart_block", 32, 256)) == pytest.approx(clean[shapes.index((32, 256))])
    # a slow reading at a lower key level is lowered to the level above at the same queries
    noisy = list(clean)
    noisy[shapes.index((64, 64))] *= 5
    cost = cost_model(synthetic(noisy))
    assert cost.layer_time_s(LayerShape("pixart_block", 64, 64)) == pytest.approx(clean[shapes.index((64, 256))])


times_strategy = st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=len(LEVELS) * len(SPLITS),
                          max_size=len(LEVELS) * len(SPLITS))


@settings(max_examples=60, deadline=None)
@given(times=times_strategy, q=st.floats(min_value=8, max_value=1024), kv=st.floats(min_value=64, max_value=1024),
       dq=st.floats(min_value=1.0, max_value=8.0), dkv=st.floats(min_value=1.0, max_value=8.0))
@example(times=[1.0] * 11 + [0.5], q=32.0, kv=65.0, dq=4.0, dkv=1.0)  # once broke monotony in q (CI, 2026-12-03)
def test_interpolation_is_monotone(times: list[float], q: float, kv: float, dq: float, dkv: float) -> None:
    """Even from noisy (non-monotone) measurements, more queries or more keys never cost less."""
    surface = Surface.of(synthetic(times).layers["pixart_block"])
    base, _ = surface.log_time(q, kv)
    more_q, _ = surface.log_time(q * dq, kv)
    more_kv, _ = surface.log_time(q, min(kv * dkv, 1024))
    if base is not None and more_q is not None:
        assert more_q >= base - 1e-12
    if base is not None and more_kv is not None:
        assert more_kv >= base - 1e-12


sparse_points = st.lists(st.tuples(st.sampled_from((64, 128, 256, 512, 1024)), st.integers(0, 5),
                                   st.floats(min_value=1e-6, max_value=1.0)), min_size=1, max_size=25)


@settings(max_examples=80, deadline=None)
@given(points=sparse_points, q=st.floats(min_value=2, max_value=1024), kv=st.floats(min_value=64, max_value=1024),
       dq=st.floats(min_value=1.0, max_value=16.0), dkv=st.floats(min_value=1.0, max_value=16.0))
def test_interpolation_is_monotone_for_sparse_measurements(points, q: float, kv: float, dq: float,
                                                            dkv: float) -> None:
    """Whatever subset of shapes was measured, in any order, with any noise."""
    rows = {}
    for level, split, seconds in points:
        rows[(level >> split, level)] = timing(level >> split, level, seconds)
    surface = Surface.of(list(rows.values()))
    base, _ = surface.log_time(q, kv)
    more_q, _ = surface.log_time(q * dq, kv)
    more_kv, _ = surface.log_time(q, min(kv * dkv, 1024))
    more_both, _ = surface.log_time(q * dq, min(kv * dkv, 1024))
    for other in (more_q, more_kv, more_both):
        if base is not None and other is not None:
            assert other >= base - 1e-12


@settings(max_examples=30, deadline=None)
@given(times=times_strategy)
def test_interpolation_stays_within_measured_extremes(times: list[float]) -> None:
    surface = Surface.of(synthetic(times).layers["pixart_block"])
    for q in (8, 20, 100, 300, 1000):
        for kv in (64, 100, 256, 700, 1024):
            value, _ = surface.log_time(q, kv)
            if value is not None:
                assert math.log(min(times)) - 1e-9 <= value <= math.log(max(times)) + 1e-9


def test_outside_range_warns_by_shape_and_falls_back_to_scaled_analytic() -> None:
    cost = cost_model(synthetic())
    shape = LayerShape("pixart_block", 4096, 4096)
    with pytest.warns(ProfileRangeWarning, match=r"query_tokens=4096.*kv_tokens 4096 outside measured 64\.\.1024"):
        value = cost.layer_time_s(shape)
    assert value == pytest.approx(cost.efficiency["pixart_block"] * cost.analytic.layer_time_s(shape))
    with pytest.warns(ProfileRangeWarning, match="no timings for pixart_block at batch 3"):
        cost.layer_time_s(LayerShape("pixart_block", 64, 256, batch=3))


def test_inside_range_does_not_warn() -> None:
    cost = cost_model(synthetic())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost.layer_time_s(LayerShape("pixart_block", 200, 300))
        cost.layer_time_s(LayerShape("embed", 100, 100))


def write(tmp_path, profile: Profile, name: str = "p.json"):
    path = tmp_path / name
    path.write_text(profile.model_dump_json())
    return path


def test_profile_of_another_model_is_refused(tmp_path) -> None:
    path = write(tmp_path, synthetic())
    with pytest.raises(InputError, match="profile of model 'pixart-tiny', not 'dit-tiny'") as err:
        load_profiled_cost_model(path, load_model("dit-tiny"))
    assert err.value.field == "model" and "\n" not in err.value.one_line()


def test_other_device_and_dtype_are_refused_by_field(tmp_path) -> None:
    path = write(tmp_path, synthetic())
    with pytest.raises(InputError) as err:
        load_profiled_cost_model(path, load_model("pixart-tiny"), gpu_name="h100-sxm")
    assert err.value.field == "device"
    with pytest.raises(InputError) as err:
        load_profiled_cost_model(path, load_model("pixart-tiny"), dtype="bf16")
    assert err.value.field == "software.dtype"


def test_other_software_stack_is_warned_about_by_field(tmp_path) -> None:
    profile = synthetic()
    profile = profile.model_copy(update={"software": SoftwareStack(torch="1.13.1", diffusers="0.1.0", dtype="fp32")})
    path = write(tmp_path, profile)
    with pytest.warns(ProfileStackWarning) as record:
        load_profiled_cost_model(path, load_model("pixart-tiny"))
    messages = " ".join(str(w.message) for w in record)
    assert "software.torch is 1.13.1" in messages and "software.diffusers is 0.1.0" in messages


def test_missing_layer_kind_and_links_only_are_refused(tmp_path) -> None:
    profile = synthetic()
    partial = profile.model_copy(update={"layers": {"pixart_block": profile.layers["pixart_block"]}})
    with pytest.raises(InputError, match="no timings for layer kinds embed, final"):
        load_profiled_cost_model(write(tmp_path, partial), load_model("pixart-tiny"))
    links_only = Profile(device="cpu", device_name="x", provenance=ProfileProvenance(kind="measured", command="t"))
    with pytest.raises(InputError, match="links-only"):
        load_profiled_cost_model(write(tmp_path, links_only, "l.json"), load_model("pixart-tiny"))


def test_corrupt_json_is_one_line(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"schema_version": 1, "model": ')
    with pytest.raises(InputError, match="invalid JSON at line 1"):
        load_profiled_cost_model(path, load_model("pixart-tiny"))
    data = json.loads(synthetic().model_dump_json())
    data["layers"]["pixart_block"][0]["median_s"] = -1
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"layers\.pixart_block\[0\]\.median_s"):
        load_profiled_cost_model(path, load_model("pixart-tiny"))


def test_cost_model_factory_uses_the_profile(tmp_path) -> None:
    from profiles.costs.selection import cost_model_for

    cost = cost_model_for(load_model("pixart-tiny"), "cpu", write(tmp_path, synthetic()))
    assert cost.name.startswith("profile:") and cost.name.endswith("p.json")


def test_link_fit_recovers_latency_and_bandwidth() -> None:
    from profiler.links import fit_latency_bandwidth

    points = [(n, 50e-6 + n / 2e9) for n in (4096, 65536, 1 << 20, 16 << 20)]
    latency_us, bandwidth_gb_s = fit_latency_bandwidth(points)
    assert latency_us == pytest.approx(50, rel=1e-6) and bandwidth_gb_s == pytest.approx(2, rel=1e-6)


def test_embed_and_final_are_whole_under_tensor_parallelism() -> None:
    cost = cost_model(synthetic())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cost.layer_time_s(LayerShape("embed", 256, 256, tensor_shard=4)) == \
            cost.layer_time_s(LayerShape("embed", 256, 256))


def test_the_monotony_report_counts_each_lowered_reading() -> None:
    from benchmarks.profile_monotony import lowered

    shapes = [(kv // m, kv) for kv in LEVELS for m in SPLITS]
    clean = [1e-6 * q * (1 + kv / 512) for q, kv in shapes]
    assert lowered(synthetic(clean))[0] == 0
    noisy = list(clean)
    noisy[shapes.index((64, 256))] *= 5
    count, priced, least = lowered(synthetic(noisy))
    assert count == 1 and priced == len(shapes) + 2 * len(LEVELS)  # blocks, embed and final
    assert least == pytest.approx(clean[shapes.index((128, 256))] / noisy[shapes.index((64, 256))])


def test_the_layer_table_is_brought_to_the_forward_timed_beside_the_loop() -> None:
    """(forward_s − blocks × block_s) ÷ layers_sum_s of the pass-overhead entry nearest the batch scales every
    layer of that batch, so the priced forward is forward_s; no entry, or a factor outside 0.75-1.33, leaves
    the table as measured."""
    from profiles.costs.profile_format import PassOverhead

    model = load_model("pixart-tiny")
    cost = load_profiled_cost_model("pixart-tiny-cpu", model, gpu_name="cpu")
    blocks = len(model.arch.block_kinds())
    shape = LayerShape(model.arch.block_kinds()[0], 256, 256, 2)

    def entry(batch: int, forward_s: float) -> PassOverhead:
        return PassOverhead(batch=batch, query_tokens=256, forward_s=forward_s, layers_sum_s=0.010 - blocks * 1e-4,
                            block_s=1e-4, first_pass_s=0.0, repeats=3)

    cost.profile = cost.profile.model_copy(update={"pass_overhead": []})
    raw = cost.layer_time_s(shape)
    assert cost.forward_alignment(2) == 1.0
    cost.profile = cost.profile.model_copy(update={"pass_overhead": [entry(1, 0.011), entry(2, 0.009)]})
    layers = 0.010 - blocks * 1e-4
    assert cost.forward_alignment(2) == pytest.approx((0.009 - blocks * 1e-4) / layers)
    assert cost.forward_alignment(1) == pytest.approx((0.011 - blocks * 1e-4) / layers)
    assert cost.forward_alignment(2) * layers + blocks * 1e-4 == pytest.approx(0.009)  # the forward as timed
    assert cost.forward_alignment(4) == cost.forward_alignment(2)  # the nearest batch's entry
    assert cost.layer_time_s(shape) == pytest.approx(cost.forward_alignment(2) * raw)
    cost.profile = cost.profile.model_copy(update={"pass_overhead": [entry(2, 0.005)]})
    assert cost.forward_alignment(2) == 1.0 and cost.layer_time_s(shape) == pytest.approx(raw)
