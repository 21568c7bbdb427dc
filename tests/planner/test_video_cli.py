"""``--frames`` in ``pfplan search`` and ``capacity``: clip length, its checks, video seconds per GPU-hour."""

from __future__ import annotations

import json

import pytest

from profiles.catalog.models import load_model


def test_frames_change_the_tokens_the_search_plans_for(pfplan):
    wan = load_model("wan-tiny")
    assert wan.with_frames(9).image_tokens(128) == 3 * wan.image_tokens(128) // 2  # 3 latent frames, not 2
    shown = pfplan("search", "--topology", "pcie8", "--model", "wan-tiny", "--frames", "9", "--top", "2", "--json")
    assert shown.code == 0, shown.err
    written = json.loads(shown.out)["plan"]
    assert "--frames 9" in written["provenance"]["command"] and written["frames"] == 9


def test_a_plan_s_frames_are_checked_against_its_model():
    from simulator.plan import ParallelPlan, violations

    wan = load_model("wan-tiny")
    clip = ParallelPlan(model="wan-tiny", height_px=128, width_px=128, steps=2, frames=9, patches=24,
                        degrees={"pipefusion": 2}, warmup_steps=1)
    assert violations(clip, wan) == []  # 3 latent frames × 8 rows = 24 token rows: 24 patches fit
    assert any(v.startswith("patches:") for v in violations(clip.model_copy(update={"frames": 5}), wan))
    wrong = violations(clip.model_copy(update={"frames": 8}), wan)
    assert wrong[0] == "frames: wan-tiny: 8 frames: expected 1 + a multiple of 4 (the VAE's temporal factor), e.g. 5"
    image = violations(ParallelPlan(model="pixart-tiny", height_px=128, width_px=128, steps=2, frames=5),
                       load_model("pixart-tiny"))
    assert image == ["frames: pixart-tiny is an image model: frames must be 1, got 5"]


@pytest.mark.parametrize("model, frames, message", [
    ("wan-tiny", "8", "wan-tiny: 8 frames: expected 1 + a multiple of 4"),
    ("pixart-tiny", "5", "pixart-tiny is an image model: frames must be 1, got 5"),
])
def test_a_frame_count_the_model_cannot_make_is_one_line_and_exit_2(pfplan, model, frames, message):
    shown = pfplan("search", "--topology", "pcie8", "--model", model, "--frames", frames)
    assert shown.code == 2 and message in shown.err and "Traceback" not in shown.err


def test_capacity_prints_seconds_of_video_per_gpu_hour(pfplan):
    shown = pfplan("capacity", "--topology", "pcie8", "--model", "wan-tiny", "--rate", "1", "--requests", "200",
                   "--json")
    assert shown.code == 0, shown.err
    rows = [row for row in json.loads(shown.out) if "video_s_per_gpu_hour" in row]
    clip_s = load_model("wan-tiny").clip_seconds()
    assert clip_s == 5 / 8 and rows
    for row in rows:
        expected = row["replica_throughput"] * 3600 * clip_s / row["devices_per_replica"]
        assert row["video_s_per_gpu_hour"] == pytest.approx(expected)
    image = pfplan("capacity", "--topology", "pcie8", "--model", "pixart-tiny", "--rate", "1", "--requests", "200",
                   "--json")
    assert "video_s_per_gpu_hour" not in image.out
