"""Closed-form parameter counts equal the real diffusers modules, built on the meta device.

``profiles.catalog.architecture`` counts parameters from a config without torch so the planner
stays light; these tests build the same config with diffusers (meta device: shapes only,
no memory) and compare exactly, in total and block by block. (Published sizes within 3%
are checked in test_models.py.)
"""

from __future__ import annotations

import json
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.catalog.models import ModelPreset, load_model, shipped_names

pytest.importorskip("diffusers")

from runtime.model_build import build_transformer, count_parameters, transformer_blocks  # noqa: E402


@lru_cache(maxsize=None)
def meta_counts(name: str) -> tuple[int, tuple[int, ...]]:
    preset = load_model(name)
    model = build_transformer(preset, meta=True)
    blocks = tuple(sum(p.numel() for p in block.parameters()) for block in model_blocks(model, preset.family))
    return count_parameters(model), blocks


def model_blocks(model, family: str) -> list:
    """The runtime adapter's block list; for a family pfrun does not run yet (no adapter), the
    double-stream blocks then the single-stream ones, in diffusers' attribute names."""
    from runtime.families import registry

    if family in registry().names():
        return transformer_blocks(model, family)
    return list(model.transformer_blocks) + list(getattr(model, "single_transformer_blocks", []))


@pytest.mark.parametrize("name", shipped_names())
def test_parameter_count_equals_the_meta_build(name):
    preset = load_model(name)
    total, blocks = meta_counts(name)
    assert preset.params == total
    assert tuple(preset.arch.layer_params()) == blocks
    assert len(blocks) == preset.layers


@pytest.mark.parametrize("name", shipped_names())
def test_embed_and_final_are_what_the_blocks_leave(name):
    preset = load_model(name)
    total, blocks = meta_counts(name)
    assert preset.arch.embed_params + preset.arch.final_params == total - sum(blocks)
    assert preset.arch.embed_params > 0 and preset.arch.final_params > 0


def resized(preset: ModelPreset, heads: int, layers: int, single: int) -> ModelPreset:
    """The tiny preset with other head and layer counts (dependent widths follow)."""
    config = dict(preset.config, num_attention_heads=heads, num_layers=layers)
    width = heads * config["attention_head_dim"]
    if "num_single_layers" in config:
        config["num_single_layers"] = single
    if "hidden_size" in config:
        config["hidden_size"] = width
    if "caption_projection_dim" in config:
        config["caption_projection_dim"] = width
    return preset.model_copy(update={"config": config})


@pytest.mark.parametrize("name", [n for n in shipped_names() if n.endswith("-tiny")])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(heads=st.integers(1, 4), layers=st.integers(1, 4), single=st.integers(1, 3))
def test_counts_hold_for_other_sizes(name, heads, layers, single):
    preset = resized(load_model(name), heads, layers, single)
    model = build_transformer(preset, meta=True)
    assert preset.params == count_parameters(model)
    assert len(model_blocks(model, preset.family)) == preset.layers


def test_models_import_and_show_a_diffusers_config(pfplan, tmp_path):
    preset = load_model("pixart-alpha")
    folder = tmp_path / "my-pixart"
    folder.mkdir()
    config = folder / "config.json"
    config.write_text(json.dumps({"_class_name": "PixArtTransformer2DModel", "_diffusers_version": "0.42.1",
                                  **preset.config}))
    shown = pfplan("models", "show", config, "--json")
    assert shown.code == 0, shown.err
    info = json.loads(shown.out)
    assert info["name"] == "my-pixart" and info["params"] == preset.params and info["layers"] == 28
    assert pfplan("models", "show", folder, "--json").out == shown.out

    out = tmp_path / "mine.yaml"
    result = pfplan("models", "import", config, "-o", out, "--name", "mine")
    assert result.code == 0, result.err
    assert "wrote" in result.out and "0.61 B parameters" in result.out
    imported = load_model(str(out))
    assert imported.name == "mine" and imported.family == "pixart" and imported.params == preset.params
    assert imported.config == preset.config and imported.uses_cfg and imported.text_tokens == 120
