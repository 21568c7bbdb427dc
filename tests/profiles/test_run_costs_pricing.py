"""How the round-5 profile fields are priced: runtime launches, Ring's core, in-loop collective points."""

from __future__ import annotations

import pytest

from planner.commands_simulate import call_timing
from profiles.costs.profile_format import (CollectiveCurve, LinkPoint, PassOverhead, RingAttentionTiming,
                                           RuntimeLaunch, VaeTiming)
from tests.profiles.test_profiled import cost_model, synthetic


def vae(px: int, median: float, first: float) -> VaeTiming:
    return VaeTiming(height_px=px, width_px=px, median_s=median, p10_s=median, p90_s=median, repeats=3, first_s=first)


def launch(first_extra: float, decode: float | None, *, fresh: bool = False, px: int = 256,
           setup: float | None = None) -> RuntimeLaunch:
    return RuntimeLaunch(height_px=px, width_px=px, steps=4, batch=2, step_s=0.01, first_step_extra_s=first_extra,
                         vae_decode_s=decode, latency_s=0.1, setup_s=setup, launches=3, fresh_process=fresh)


def overhead(first: float) -> PassOverhead:
    return PassOverhead(batch=2, query_tokens=256, forward_s=0.01, layers_sum_s=0.009, block_s=1e-4,
                        first_pass_s=first, repeats=3)


def test_without_launches_the_profilers_cold_figures_stand() -> None:
    model = cost_model(synthetic().model_copy(update={"vae_decode": [vae(256, 0.06, 0.07)],
                                                      "pass_overhead": [overhead(0.006)]}))
    assert model.first_pass_overhead_s(2) == 0.006
    assert model.vae_decode_time_s(256, 256) == 0.07


def test_launches_replace_the_first_pass_and_choose_the_warm_decode() -> None:
    profile = synthetic().model_copy(update={"vae_decode": [vae(256, 0.06, 0.07), vae(512, 0.25, 0.26)],
                                             "pass_overhead": [overhead(0.006)],
                                             "runtime_launch": [launch(0.001, 0.063)]})
    model = cost_model(profile)
    assert model.first_pass_overhead_s(2) == 0.001
    assert model.vae_decode_time_s(256, 256) == pytest.approx(0.06)  # the warm median, not the cold 0.07
    assert model.vae_decode_time_s(512, 512) == pytest.approx(0.25)
    assert model.vae_decode_time_s(1024, 1024) == pytest.approx(4 * 0.25)


def test_a_launch_that_decoded_cold_keeps_the_cold_figure() -> None:
    profile = synthetic().model_copy(update={"vae_decode": [vae(256, 0.06, 0.07)],
                                             "runtime_launch": [launch(0.0, 0.08)]})
    assert cost_model(profile).vae_decode_time_s(256, 256) == 0.07


def test_fresh_launches_price_the_decode_a_new_rank_pays_at_every_resolution() -> None:
    """A fresh rank decoded 256 px in 0.09 s where the warm median is 0.06: ×1.5 at every size."""
    profile = synthetic().model_copy(update={"vae_decode": [vae(256, 0.06, 0.12), vae(512, 0.25, 0.3)],
                                             "runtime_launch": [launch(0.004, 0.09, fresh=True)]})
    model = cost_model(profile)
    assert model.vae_decode_time_s(256, 256) == pytest.approx(0.09)
    assert model.vae_decode_time_s(512, 512) == pytest.approx(1.5 * 0.25)
    assert model.vae_decode_time_s(1024, 1024) == pytest.approx(4 * 1.5 * 0.25)
    assert model.first_pass_overhead_s(2) == 0.004


def test_a_fresh_launch_at_an_unmeasured_size_is_compared_at_its_own_pixels() -> None:
    """Launched at 384 px, nearest decode timing 256 px: the warm median there counts 384²/256² as many pixels."""
    profile = synthetic().model_copy(update={"vae_decode": [vae(256, 0.06, 0.12)],
                                             "runtime_launch": [launch(0.0, 0.09 * 384 ** 2 / 256 ** 2, fresh=True,
                                                                       px=384)]})
    assert cost_model(profile).vae_decode_time_s(256, 256) == pytest.approx(0.09)


def ring(degree: int, batch: int, q: int, excess: float, sdpa: float = 1e-4) -> RingAttentionTiming:
    return RingAttentionTiming(degree=degree, batch=batch, query_tokens=q, kv_tokens=256, partial_s=1e-4,
                               merge_s=1e-5, sdpa_s=sdpa, excess_s=excess, repeats=3)


def test_ring_excess_comes_from_the_nearest_measured_shape_in_proportion_to_attention_flops() -> None:
    model = cost_model(synthetic().model_copy(update={"ring_attention": [ring(2, 2, 128, 7e-4), ring(4, 2, 64, 8e-4)]}))
    assert model.ring_attention_excess_s(2, 2, 128, 256, 32) == pytest.approx(7e-4)
    assert model.ring_attention_excess_s(2, 2, 256, 512, 32) == pytest.approx(4 * 7e-4)
    assert model.ring_attention_excess_s(4, 1, 64, 256, 32) == pytest.approx(8e-4 / 2)
    assert model.ring_attention_excess_s(1, 2, 256, 256, 32) == 0.0


def test_a_negative_ring_excess_never_saves_more_than_the_sdpa_call() -> None:
    model = cost_model(synthetic().model_copy(update={"ring_attention": [ring(2, 2, 128, -5e-4, sdpa=2e-4)]}))
    assert model.ring_attention_excess_s(2, 2, 128, 256, 32) == pytest.approx(-2e-4)


def test_without_ring_timings_or_an_elementwise_figure_ring_is_unpriced() -> None:
    assert cost_model(synthetic()).ring_attention_excess_s(2, 2, 128, 256, 32) is None


def curve(points: list[tuple[int, float]], looped: list[tuple[int, float]], extra_us: float = 0.0) -> CollectiveCurve:
    return CollectiveCurve(op="all_reduce", group_size=2, latency_us=100, bandwidth_gb_s=1.0,
                           points=[LinkPoint(bytes=b, seconds=s) for b, s in points],
                           in_loop_points=[LinkPoint(bytes=b, seconds=s) for b, s in looped],
                           in_loop_extra_us=extra_us)


BACK_TO_BACK = [(4096, 3e-4), (65536, 3.8e-3), (1 << 20, 1e-3), (1 << 22, 3.3e-3), (1 << 24, 1.4e-2)]


def test_in_loop_points_time_the_call_where_measured() -> None:
    timing = call_timing(curve(BACK_TO_BACK, [(4096, 1.2e-3), (65536, 1.5e-3), (1 << 20, 2e-3)], extra_us=0.0))
    assert timing.extra_s == 0.0
    assert timing.time_s(65536) == pytest.approx(1.5e-3)  # not the 3.8 ms back-to-back outlier
    # above the largest in-loop size: the back-to-back curve shifted by the difference at 1 MiB (+1 ms)
    assert timing.time_s(1 << 22) == pytest.approx(3.3e-3 + 1e-3)
    sizes = [2 ** k for k in range(10, 26)]
    assert [timing.time_s(b) for b in sizes] == sorted(timing.time_s(b) for b in sizes)


def test_without_in_loop_points_the_back_to_back_curve_and_its_extra_stand() -> None:
    timing = call_timing(curve(BACK_TO_BACK, [], extra_us=500.0))
    assert timing.points == tuple(BACK_TO_BACK) and timing.extra_s == pytest.approx(5e-4)


def test_the_image_set_up_is_the_launches_time_before_their_first_span() -> None:
    """Profiles from before the field say nothing (the simulator lists it as unpriced), not 0."""
    assert cost_model(synthetic()).image_setup_time_s() is None
    old = synthetic().model_copy(update={"runtime_launch": [launch(0.001, 0.06, fresh=True)]})
    assert cost_model(old).image_setup_time_s() is None
    both = synthetic().model_copy(update={"runtime_launch": [launch(0.001, 0.06, fresh=True, setup=0.0028),
                                                             launch(0.001, 0.2, fresh=True, px=512, setup=0.0031)]})
    assert cost_model(both).image_setup_time_s() == pytest.approx(0.0031)
