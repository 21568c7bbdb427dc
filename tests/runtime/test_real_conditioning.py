"""The conditioning of the real presets (PixArt-α's size embedding, HunyuanDiT v1.1's image
meta) reaches the model, in the serial forward, the staged adapter and a PipeFusion run.

The tiny presets switch these inputs off, so each test turns them on with a config
override (a preset file in ``tmp_path``) or builds the real preset on the meta device.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from runtime.model_build import build_transformer
from runtime.forward_inputs import Branch, forward_inputs, random_branch, transformer_kwargs
from profiles.catalog.models import load_model
from runtime.staged_model import StagedModel
from runtime.attention.stale_kv import KVState

from .helpers import max_diff, plan, run

T = 3


def _preset_file(tmp_path, name: str, overrides: dict) -> str:
    data = load_model(name).model_dump()
    data["name"] = f"{name}-cond"
    data["config"] = {**data["config"], **overrides}
    path = tmp_path / f"{name}-cond.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize("name,overrides", [
    ("pixart-tiny", {"use_additional_conditions": True, "num_attention_heads": 3, "cross_attention_dim": 48}),
    ("hunyuan-tiny", {"use_style_cond_and_image_meta_size": True}),
])
def test_added_conditions_run_serial_and_pipefusion_exactly(tmp_path, name, overrides):
    """pixart-tiny as PixArt-α 1024 (size and aspect-ratio embedding; hidden 48 divides into
    the embedding's thirds): serial runs, and PipeFusion with W = T reproduces it."""
    model = _preset_file(tmp_path, name, overrides)
    serial = run(plan(model, steps=T))
    assert serial.latents[0].isfinite().all()
    piped = run(plan(model, steps=T, degrees={"pipefusion": 2}, patches=2, warmup_steps=T))
    assert max_diff(piped, serial) <= 1e-5


def test_added_conditions_change_the_result(tmp_path):
    """The size embedding is used: the same weights at two aspect ratios give different noise."""
    preset = load_model(_preset_file(tmp_path, "pixart-tiny", {"use_additional_conditions": True,
                                                               "num_attention_heads": 3,
                                                               "cross_attention_dim": 48}))
    model = build_transformer(preset)
    branch = random_branch(preset, torch.Generator().manual_seed(0), null=False)
    latent = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    kw = transformer_kwargs(preset, latent, torch.tensor(500), branch)
    other = {**kw, "added_cond_kwargs": {"resolution": torch.tensor([[256.0, 512.0]]),
                                         "aspect_ratio": torch.tensor([[0.5]])}}
    with torch.inference_mode():
        assert not torch.equal(model(**kw)[0], model(**other)[0])


@pytest.mark.parametrize("name", ["pixart-alpha", "hunyuan-dit", "sd3-medium", "flux-dev", "dit-xl-2"])
def test_real_preset_inputs_run_through_the_model_and_staged_context_on_meta(name):
    """The real presets' own configs (PixArt-α: use_additional_conditions true) accept the
    shared inputs, in the whole forward and in the staged adapter's step context, shapes only."""
    preset = load_model(name)
    model = build_transformer(preset, meta=True, config_overrides={"num_layers": 4})
    rows, cols = 4, 4  # square: DiT unpatchifies assuming it
    inputs = forward_inputs(preset, rows=rows, cols=cols, batch=2, device="meta", dtype=torch.float32)
    with torch.inference_mode():
        (out,) = model(**inputs)
    assert out.shape[0] == 2
    staged = StagedModel(preset, model, rows, cols, KVState())
    gen = torch.Generator().manual_seed(0)
    branch = random_branch(preset, gen, null=False)
    branch = Branch(**{k: None if v is None else v.to("meta") for k, v in vars(branch).items()})
    with torch.inference_mode():
        ctx = staged.context(torch.tensor(500), branch, torch.float32)
    assert ctx.temb is not None
