"""Issue 17's presets: video token geometry, the two-expert layout, text encoders recorded with sources."""

from __future__ import annotations

import pytest

from profiles.catalog.models import load_model
from profiles.errors import InputError

NEW = ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-t2v-a14b", "hunyuan-video", "qwen-image", "sd3.5-large",
       "flux2-dev"]


def test_wan_720p_81_frames_is_21_latent_frames_of_45_by_80_tokens():
    wan = load_model("wan2.1-t2v-14b")
    assert wan.latent_frames() == 21 and wan.latent_size(720, 1280) == (21 * 90, 160)
    assert wan.token_grid(720, 1280) == (21 * 45, 80) and wan.image_tokens(720, 1280) == 75_600
    assert wan.with_frames(1).image_tokens(720, 1280) == 3_600  # one frame: an image
    assert load_model("hunyuan-video").image_tokens(720, 1280) == 33 * 45 * 80  # 129 frames


def test_image_models_keep_one_frame():
    pixart = load_model("pixart-alpha")
    assert not pixart.is_video and pixart.latent_frames() == 1 and pixart.with_frames(None) is pixart
    with pytest.raises(InputError, match="image model: frames must be 1"):
        pixart.with_frames(5)
    with pytest.raises(InputError, match="expected 1 \\+ a multiple of 4"):
        load_model("wan2.1-t2v-14b").with_frames(80)


def test_wan22_holds_two_experts_of_one_shape():
    a14b, t2v14b = load_model("wan2.2-t2v-a14b"), load_model("wan2.1-t2v-14b")
    assert a14b.params == t2v14b.params and a14b.total_params == 2 * a14b.params
    assert a14b.experts == 2 and a14b.expert_boundary_ratio == 0.875
    assert a14b.summary()["total_params"] == a14b.total_params


@pytest.mark.parametrize("name", NEW)
def test_new_presets_record_their_text_encoders_with_a_source(name):
    preset = load_model(name)
    assert preset.text_encoder_sizes and all(e.params > 1e8 and e.source for e in preset.text_encoder_sizes)
    assert preset.published_source and preset.published_params
