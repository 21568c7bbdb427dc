"""The model catalog: presets, derived dimensions, parameter counts."""

from __future__ import annotations

import pytest

from profiles.errors import InputError
from profiles.catalog.models import all_presets, load_model, shipped_names

REAL = ["pixart-alpha", "sd3-medium", "flux-dev", "dit-xl-2", "hunyuan-dit",
        "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "wan2.2-t2v-a14b", "hunyuan-video", "qwen-image", "sd3.5-large",
        "flux2-dev"]
TINY = ["pixart-tiny", "sd3-tiny", "sd3.5-tiny", "flux-tiny", "dit-tiny", "hunyuan-tiny",
        "wan-tiny", "hunyuan-video-tiny", "qwen-image-tiny", "flux2-tiny"]


def test_catalog_has_the_shipped_presets():
    assert sorted(shipped_names()) == sorted(REAL + TINY)
    for p in all_presets():
        assert p.name in shipped_names()
        assert (p.tiny_of in REAL) == p.tiny


@pytest.mark.parametrize("name", REAL)
def test_published_parameter_count_within_3_percent(name):
    preset = load_model(name)
    # diffusers' DiT repeats the class/timestep embedding in every block; published counts share it.
    counted = preset.params - preset.arch.duplicated_params
    assert counted == pytest.approx(preset.published_params, rel=0.03)


@pytest.mark.parametrize("name, tokens", [("pixart-alpha", 4096), ("flux-dev", 4096), ("sd3-medium", 4096),
                                          ("dit-xl-2", 256), ("hunyuan-dit", 4096)])
def test_image_tokens_at_default_resolution(name, tokens):
    preset = load_model(name)
    assert preset.image_tokens(preset.default_resolution) == tokens


def test_image_tokens_grow_with_resolution():
    pixart = load_model("pixart-alpha")
    assert pixart.image_tokens(2048) == 16384
    assert pixart.token_grid(1024, 512) == (64, 32)


def test_resolution_must_be_a_whole_number_of_tokens():
    with pytest.raises(InputError, match="multiple of 16"):
        load_model("flux-dev").image_tokens(1000)


def test_tiny_presets_keep_the_real_block_kinds():
    for tiny in TINY:
        t = load_model(tiny)
        real = load_model(t.tiny_of)
        assert [g.kind for g in t.arch.blocks] == [g.kind for g in real.arch.blocks]
        assert t.arch.attention == real.arch.attention
        assert t.uses_cfg == real.uses_cfg
