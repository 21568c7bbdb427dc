"""On a full pass the stale-K/V processors are diffusers' own attention, bit for bit.

PipeFusion with W = T is exact only if the processors that replace diffusers' attention
compute the same thing in the same order; this compares the whole model's forward with
and without them installed (difference exactly 0), for every family.
"""

from __future__ import annotations

import pytest
import torch

from runtime.model_build import build_transformer, transformer_blocks
from runtime.forward_inputs import forward_inputs
from profiles.catalog.models import load_model
from runtime.attention.stale_kv import KVState, install_stale_kv


@pytest.mark.parametrize("name", ["pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny", "hunyuan-tiny"])
def test_full_pass_through_stale_processors_equals_diffusers_attention(name):
    preset = load_model(name)
    model = build_transformer(preset)
    rows, cols = preset.token_grid(128, 128)
    inputs = forward_inputs(preset, rows=rows, cols=cols, batch=2, device="cpu", dtype=torch.float32, seed=3)
    with torch.inference_mode():
        (reference,) = model(**inputs)
        state = KVState()
        install_stale_kv(preset.family, transformer_blocks(model, preset.family), state)
        (stale,) = model(**inputs)
        (again,) = model(**inputs)  # the buffers are replaced on a full pass, not accumulated
    assert torch.equal(stale, reference)
    assert torch.equal(again, reference)
