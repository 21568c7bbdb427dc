"""Every tiny preset builds and runs a forward pass on CPU; patches in any order match the full pass.

The staged passes of every family against the diffusers forward: tests/runtime/test_family_adapters.py.
"""

from __future__ import annotations

import functools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.catalog.models import load_model
from runtime.model_inputs import (Conditioning, transformer_kwargs, initial_latent, make_conditioning,
                                  noise_from_output, pack_flux, unpack_flux)
from runtime.model_loading import load_model_parts
from runtime.staged_model import StagedModel
from runtime.attention.stale_kv import KVState, install_stale_kv

TINY = ["pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny", "hunyuan-tiny"]


def branch_for(preset, cond: Conditioning):
    return cond.branches(("uncond", "cond") if preset.uses_cfg else ("cond",))


@pytest.mark.parametrize("name", TINY)
def test_tiny_preset_builds_and_runs_one_forward(name):
    preset = load_model(name)
    parts = load_model_parts(preset, with_vae=True)
    branch = branch_for(preset, make_conditioning(preset, seed=0))
    latent = initial_latent(preset, 128, 128, seed=0)
    batch = 2 if preset.uses_cfg else 1
    parts.scheduler.set_timesteps(4)
    with torch.inference_mode():
        out = parts.transformer(**transformer_kwargs(preset, latent.expand(batch, -1, -1, -1),
                                                 parts.scheduler.timesteps[0], branch))[0]
        noise = noise_from_output(preset, out, *preset.token_grid(128, 128))
        image = parts.vae.decode(latent).sample
    assert noise.shape == (batch, *latent.shape[1:])
    assert torch.isfinite(noise).all()
    assert image.shape == (1, 3, 128, 128)


def test_seeded_conditioning_is_reproducible_and_prompt_dependent():
    preset = load_model("pixart-tiny")
    a = make_conditioning(preset, seed=0, prompt="a cat")
    b = make_conditioning(preset, seed=0, prompt="a cat")
    c = make_conditioning(preset, seed=0, prompt="a dog")
    assert torch.equal(a.cond.prompt_embeds, b.cond.prompt_embeds)
    assert not torch.equal(a.cond.prompt_embeds, c.cond.prompt_embeds)
    assert torch.equal(a.uncond.prompt_embeds, c.uncond.prompt_embeds)


def test_prompt_embeds_file_round_trip(tmp_path):
    preset = load_model("sd3-tiny")
    cond = make_conditioning(preset, seed=3)
    path = tmp_path / "embeds.pt"
    torch.save({"cond": {"prompt_embeds": cond.cond.prompt_embeds, "pooled_embeds": cond.cond.pooled_embeds},
                "uncond": {"prompt_embeds": cond.uncond.prompt_embeds, "pooled_embeds": cond.uncond.pooled_embeds}},
               path)
    loaded = make_conditioning(preset, seed=0, prompt_embeds_file=path)
    assert torch.equal(loaded.cond.prompt_embeds, cond.cond.prompt_embeds)


def test_flux_packing_round_trips():
    x = torch.randn(2, 16, 8, 12)
    assert torch.equal(unpack_flux(pack_flux(x), 4, 6), x)


@functools.lru_cache(maxsize=None)
def _flux_setup():
    preset = load_model("flux-tiny")
    parts = load_model_parts(preset, with_vae=False)
    rows, cols = preset.token_grid(128, 128)
    kv = KVState()
    staged = StagedModel(preset, parts.transformer, rows, cols, kv)
    install_stale_kv(preset.family, staged.blocks, kv)
    branch = branch_for(preset, make_conditioning(preset, seed=2))
    latent = initial_latent(preset, 128, 128, seed=2)
    parts.scheduler.set_timesteps(4)
    t = parts.scheduler.timesteps[2]
    with torch.inference_mode():
        ctx = staged.context(t, branch, latent.dtype)
        n = len(staged.blocks)
        hidden, _ = staged.run_blocks(0, n, staged.embed(latent, 0, rows), ctx.text, ctx, 0, rows, True)
        full = staged.final(hidden, ctx, 0, rows)
    return staged, ctx, latent, full, rows


@settings(max_examples=12, deadline=None)
@given(cuts=st.sets(st.integers(1, 7), max_size=6), order=st.randoms(use_true_random=False))
def test_any_row_partition_in_any_order_matches_the_full_pass_over_fresh_buffers(cuts, order):
    """Flux (rotary rows sliced per patch): patches of any sizes, run in any order, over buffers
    holding this step's K/V, reproduce the full pass (the stale path is exact when nothing is stale)."""
    staged, ctx, latent, full, rows = _flux_setup()
    bounds = [0, *sorted(cuts), rows]
    patches = list(zip(bounds, bounds[1:]))
    order.shuffle(patches)
    out = torch.empty_like(full)
    with torch.inference_mode():
        for r0, r1 in patches:
            hidden, _ = staged.run_blocks(0, len(staged.blocks), staged.embed(latent, r0, r1), ctx.text, ctx,
                                          r0, r1, False)
            out[:, :, r0 * 2: r1 * 2] = staged.final(hidden, ctx, r0, r1)
    assert (out - full).abs().max() <= 1e-5
