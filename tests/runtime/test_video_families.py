"""Issue 17's families: each tiny preset runs a diffusers forward; Wan and Qwen-Image run under pfrun.

Wan's video latent is (B, C, F·H, W) in the runtime (latent frames stacked along the rows,
the catalog's token rows); PipeFusion with warm-up = steps must give the serial latent
exactly (same operations in the same order), with a patch count that leaves an uneven last
patch and cuts across a frame boundary. HunyuanVideo and FLUX.2 have no runtime adapter yet:
their tiny presets run diffusers' own forward here, so the architecture the catalog counts
is one diffusers builds and runs.
"""

from __future__ import annotations

import pytest
import torch

from profiles.catalog.models import load_model
from runtime.model_build import build_transformer, count_parameters
from simulator.plan import patch_rows

from .helpers import max_diff, plan, run

T = 4


def _forward_inputs(name: str) -> tuple[torch.nn.Module, dict, tuple[int, ...]]:
    """A tiny model, its forward's keyword arguments for a 128 px input, and the output shape."""
    preset = load_model(name)
    model = build_transformer(preset)
    gen = torch.Generator().manual_seed(0)
    text = torch.randn(1, preset.text_tokens, preset.text_embed_dim, generator=gen)
    t = torch.tensor([500.0])
    c = preset.arch.latent_channels
    rows = cols = 128 // preset.vae_scale_factor
    frames = preset.latent_frames()
    if preset.family == "hunyuan_video":
        latent = torch.randn(1, c, frames, rows, cols, generator=gen)
        kw = dict(hidden_states=latent, timestep=t, encoder_hidden_states=text,
                  encoder_attention_mask=torch.ones(1, preset.text_tokens, dtype=torch.bool),
                  pooled_projections=torch.randn(1, preset.pooled_embed_dim, generator=gen),
                  guidance=torch.tensor([6000.0]), return_dict=False)
        return model, kw, (1, c, frames, rows, cols)
    if preset.family == "flux2":
        tokens = (rows // 2) * (cols // 2)
        ids = torch.cartesian_prod(torch.arange(1), torch.arange(rows // 2), torch.arange(cols // 2), torch.arange(1))
        kw = dict(hidden_states=torch.randn(1, tokens, 4 * c, generator=gen), encoder_hidden_states=text,
                  timestep=t / 1000, img_ids=ids, txt_ids=torch.zeros(preset.text_tokens, 4, dtype=torch.long),
                  guidance=torch.tensor([4.0]), return_dict=False)
        return model, kw, (1, tokens, 4 * c)
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["hunyuan-video-tiny", "flux2-tiny"])
def test_tiny_presets_without_an_adapter_run_the_diffusers_forward(name):
    model, kw, shape = _forward_inputs(name)
    assert count_parameters(model) == load_model(name).params
    with torch.inference_mode():
        out = model(**kw)[0]
    assert tuple(out.shape) == shape and out.isfinite().all() and out.std() > 0


def test_sd35_large_layout_runs_at_tiny_size():
    """SD3.5-large is the sd3 family with QK RMS norm: the sd3 tiny preset with that norm runs and counts."""
    tiny = load_model("sd3-tiny")
    preset = tiny.model_copy(update={"config": {**tiny.config, "qk_norm": "rms_norm"}})
    assert load_model("sd3.5-large").config["qk_norm"] == "rms_norm"
    model = build_transformer(preset)
    assert count_parameters(model) == preset.params > tiny.params
    text = torch.randn(1, preset.text_tokens, preset.text_embed_dim)
    with torch.inference_mode():
        out = model(hidden_states=torch.randn(1, 16, 16, 16), encoder_hidden_states=text,
                    pooled_projections=torch.randn(1, preset.pooled_embed_dim), timestep=torch.tensor([500.0]),
                    return_dict=False)[0]
    assert out.shape == (1, 16, 16, 16) and out.isfinite().all()


@pytest.fixture(scope="module")
def serial():
    return {name: run(plan(name, steps=T)) for name in ("wan-tiny", "qwen-image-tiny")}


def test_the_wan_latent_stacks_latent_frames_along_the_rows(serial):
    preset = load_model("wan-tiny")
    assert preset.latent_frames() == 2 == preset.latent_frames(5)  # 1 + (5 - 1) / 4
    assert preset.latent_size(128, 128) == (32, 16) and preset.token_grid(128, 128) == (16, 8)
    assert tuple(serial["wan-tiny"].latents[0].shape) == (1, 4, 32, 16)
    assert serial["wan-tiny"].latents[0].isfinite().all()


@pytest.mark.parametrize("name", ["wan-tiny", "qwen-image-tiny"])
def test_pipefusion_with_full_warmup_and_an_uneven_last_patch_reproduces_serial(name, serial):
    rows = load_model(name).token_grid(128, 128)[0]
    assert len(set(patch_rows(rows, 3))) > 1  # 3 patches over 16 or 8 token rows: uneven
    result = run(plan(name, steps=T, degrees={"pipefusion": 2}, patches=3, warmup_steps=T))
    assert max_diff(result, serial[name]) == 0  # same operations in the same order


def test_wan_pipefusion_patches_may_cut_through_a_frame(serial):
    """wan-tiny has 2 latent frames of 8 token rows; 3 patches cut frame 0|1 inside a patch."""
    rows_per_frame = load_model("wan-tiny").token_grid(128, 128)[0] // 2
    sizes = patch_rows(2 * rows_per_frame, 3)  # [6, 5, 5]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    assert any(r0 < rows_per_frame < r0 + n for r0, n in zip(starts, sizes))
    stale = run(plan("wan-tiny", steps=T, degrees={"pipefusion": 2}, patches=3, warmup_steps=1))
    diff = max_diff(stale, serial["wan-tiny"])
    assert 0 < diff < 1  # stale K/V for the later patches: visible, bounded


@pytest.mark.parametrize("preset,axis", [("wan-tiny", "ulysses"), ("wan-tiny", "ring"), ("wan-tiny", "distrifusion"),
                                         ("wan-tiny", "tensor"), ("qwen-image-tiny", "ulysses"),
                                         ("qwen-image-tiny", "ring"), ("qwen-image-tiny", "distrifusion")])
def test_axes_the_new_adapters_gained_are_no_longer_refused(preset: str, axis: str) -> None:
    """Issue 11 (round 4) gave Wan and Qwen-Image their sequence-parallel and patch-parallel
    processors and Wan its sharded RMS norms, and removed their ``runtime_lacks`` entries: the
    search's runnable check and pfrun both read them, so both now accept these axes (that they
    run and match serial is tests/runtime/test_every_shape_runs.py)."""
    from profiles.catalog.models import load_model
    from simulator.plan import plan_from_spec
    from simulator.runnable import unrunnable_reason

    model = load_model(preset)
    assert not getattr(model.arch.spec, "runtime_lacks", {})
    assert unrunnable_reason(plan_from_spec(preset, f"{axis}=2", height_px=128, width_px=128, steps=2), model) is None


def test_every_capability_a_strategy_needs_is_one_a_family_can_lack() -> None:
    from profiles.families.spec import RUNTIME_CAPABILITIES
    from simulator.strategies import STRATEGIES

    needs = {s.runtime_needs for s in STRATEGIES if s.runtime_needs}
    assert needs == RUNTIME_CAPABILITIES
