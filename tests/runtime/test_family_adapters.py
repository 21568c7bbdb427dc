"""Every family of the catalog has a runtime adapter, and each adapter's staged forward is the model's.

The registry is walked, not a hand-written list: a family added to the catalog without an
adapter (or an adapter without a tiny preset to test it on) fails here.
"""

from __future__ import annotations

import pytest
import torch

from profiles.catalog.models import all_presets, load_model
from runtime.families import FamilyAdapter, FamilyRegistry, UnknownFamily, adapter_for, family_modules, registry
from runtime.model_inputs import Conditioning, initial_latent, make_conditioning, noise_from_output, transformer_kwargs
from runtime.model_loading import load_model_parts
from runtime.staged_model import StagedModel
from runtime.attention.stale_kv import STALE_PROCESSORS, KVState, install_stale_kv

NO_ADAPTER_YET: set[str] = set()
"""Catalog families the planner prices but pfrun does not run yet (issue 17: profiles, parameter
counts and a plain diffusers forward of their tiny presets in tests/runtime/test_video_families.py)."""
TINY_OF_FAMILY = {p.family: p.name for p in sorted(all_presets(), key=lambda p: p.name)
                  if p.tiny and p.family not in NO_ADAPTER_YET}


def branch_for(preset, cond: Conditioning):
    return cond.branches(("uncond", "cond") if preset.uses_cfg else ("cond",))


def test_every_catalog_family_has_one_adapter_in_its_own_module():
    reg = registry()
    assert {p.family for p in all_presets()} - NO_ADAPTER_YET <= set(reg.names())
    assert not NO_ADAPTER_YET & set(reg.names())  # the list says only what is missing
    assert family_modules() == reg.names()  # each module registers its own family, once
    for name, adapter in reg.items():
        assert type(adapter).__module__ == f"runtime.families.{name}"
        assert adapter.processor_kinds and adapter.processor_kinds <= (STALE_PROCESSORS.keys()
                                                                       | adapter.own_stale_processors().keys())


def test_every_adapter_has_a_tiny_preset_to_be_tested_on():
    assert set(TINY_OF_FAMILY) == set(registry().names())


def test_the_registry_refuses_duplicates_and_names_the_families_on_a_miss():
    reg = FamilyRegistry()
    reg.register(adapter_for("pixart"))
    with pytest.raises(ValueError, match="'pixart' is registered twice"):
        reg.register(type(adapter_for("pixart"))())
    with pytest.raises(UnknownFamily, match=r"no runtime adapter for family 'flux3'; families: dit, flux, flux2, hunyuan"):
        adapter_for("flux3")
    with pytest.raises(TypeError):  # an adapter missing its staged calls cannot be built
        type("Half", (FamilyAdapter,), {"name": "half"})()


@pytest.mark.parametrize("family", sorted(TINY_OF_FAMILY))
def test_attention_sites_are_of_the_declared_kinds(family):
    preset = load_model(TINY_OF_FAMILY[family])
    parts = load_model_parts(preset, with_vae=False)
    adapter = adapter_for(family)
    blocks = adapter.blocks(parts.transformer)
    assert len(blocks) == preset.layers
    kinds = {kind for block in blocks for kind, _ in adapter.attention_sites(block)}
    assert kinds == adapter.processor_kinds


@pytest.mark.parametrize("family", sorted(TINY_OF_FAMILY))
def test_staged_passes_match_the_diffusers_forward(family):
    """Full pass split into two stages, then row patches over fresh K/V buffers: both equal forward()."""
    preset = load_model(TINY_OF_FAMILY[family])
    parts = load_model_parts(preset, with_vae=False)
    rows, cols = preset.token_grid(128, 128)
    branch = branch_for(preset, make_conditioning(preset, seed=1))
    batch = 2 if preset.uses_cfg else 1
    latent = initial_latent(preset, 128, 128, seed=1).expand(batch, -1, -1, -1)
    parts.scheduler.set_timesteps(4)
    t = parts.scheduler.timesteps[1]
    with torch.inference_mode():
        ref = noise_from_output(preset, parts.transformer(**transformer_kwargs(preset, latent, t,
                                                                           branch))[0], rows, cols)
        kv = KVState()
        staged = StagedModel(preset, parts.transformer, rows, cols, kv)
        n = install_stale_kv(preset.family, staged.blocks, kv)
        assert n == len(staged.blocks) == preset.layers
        ctx = staged.context(t, branch, latent.dtype)
        text = ctx.text if staged.carries_text else None
        half = n // 2
        hidden, txt = staged.run_blocks(0, half, staged.embed(latent, 0, rows), text, ctx, 0, rows, True)
        hidden, _ = staged.run_blocks(half, n, hidden, txt, ctx, 0, rows, True)
        full = staged.final(hidden, ctx, 0, rows)
        pieces = []
        for r0, r1 in [(0, 3), (3, 5), (5, rows)]:
            hidden, _ = staged.run_blocks(0, n, staged.embed(latent, r0, r1), text, ctx, r0, r1, False)
            pieces.append(staged.final(hidden, ctx, r0, r1))
    assert (full - ref).abs().max() <= 1e-5
    assert (torch.cat(pieces, dim=2) - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("family", sorted(TINY_OF_FAMILY))
@pytest.mark.parametrize("last_stage", [False, True])
def test_dropped_blocks_keep_only_what_the_output_layer_reads(family, last_stage):
    """Blocks another stage runs go to the meta device; DiT's last stage keeps block 0's
    label/timestep embedding (its output layer reads it), and nothing else of block 0."""
    preset = load_model(TINY_OF_FAMILY[family])
    model = load_model_parts(preset, with_vae=False).transformer
    adapter = adapter_for(family)
    blocks = adapter.blocks(model)
    for index, block in enumerate(blocks):
        adapter.drop_block(block, index, last_stage=last_stage)
    kept = {name for name, p in blocks[0].named_parameters() if p.device.type != "meta"}
    if family == "dit" and last_stage:
        assert kept and all(name.startswith("norm1.emb.") for name in kept)
    else:
        assert kept == set()
    assert all(p.device.type == "meta" for block in blocks[1:] for p in block.parameters())
