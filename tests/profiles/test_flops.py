"""FLOPs of one block of each family: the formulas against a hand count and against torch.

The hand counts below are written out from each diffusers block's matmuls, term by term,
for the tiny presets' dimensions; ``torch.utils.flop_counter`` then counts the real block
(math SDPA backend, so attention's two matmuls are counted) and must agree to 1% (the
AdaLN modulation projections, which act on one vector per image, are not in the formulas).
"""

from __future__ import annotations

import time

import pytest

from profiles.costs.cost_model import LayerShape
from profiles.costs.flops import layer_flops
from profiles.catalog.models import load_model

Q, KV = 64, 256  # a PipeFusion patch: a quarter of the 16×16-token image over all its keys


def hand_count(name: str, kind: str) -> int:
    """Matmul FLOPs (2 per multiply-add) of one block, counted by hand from the dimensions."""
    m = load_model(name)
    a = m.arch
    h, f, t = a.hidden_size, a.ffn_inner, m.text_tokens
    q, k = Q, KV
    qkvo = 4 * (2 * q * h * h)                       # to_q, to_k, to_v, to_out on the image tokens
    attn = 2 * q * k * h + 2 * q * k * h             # Q·Kᵀ and P·V over all heads
    mlp = 2 * q * h * f + 2 * q * f * h              # up and down projections
    if kind == "dit_block":
        return qkvo + attn + mlp
    if kind in ("pixart_block", "hunyuan_block", "hunyuan_skip_block"):
        c = a.text_width
        cross = 2 * q * h * h + 2 * t * c * h + 2 * t * c * h + 2 * q * h * h  # q, k, v, out
        cross_attn = 2 * q * t * h + 2 * q * t * h
        skip = 2 * q * (2 * h) * h if kind == "hunyuan_skip_block" else 0       # skip_linear(2h → h)
        return qkvo + attn + cross + cross_attn + mlp + skip
    joint_attn = 4 * (q + t) * (k + t) * h
    if kind in ("sd3_joint_block", "flux_double_block"):
        text = 4 * (2 * t * h * h) + 2 * t * h * f + 2 * t * f * h  # add_q/k/v, to_add_out, ff_context
        return qkvo + mlp + text + joint_attn
    if kind == "sd3_joint_block_last":
        text = 3 * (2 * t * h * h)  # context_pre_only: no to_add_out, no ff_context
        return qkvo + mlp + text + joint_attn
    if kind == "flux_single_block":
        n = q + t
        return 2 * n * h * 3 * h + 2 * n * h * f + 2 * n * (h + f) * h + joint_attn  # qkv, proj_mlp, proj_out
    raise AssertionError(kind)


CASES = [("pixart-tiny", "pixart_block"), ("sd3-tiny", "sd3_joint_block"), ("sd3-tiny", "sd3_joint_block_last"),
         ("flux-tiny", "flux_double_block"), ("flux-tiny", "flux_single_block"), ("dit-tiny", "dit_block"),
         ("hunyuan-tiny", "hunyuan_block"), ("hunyuan-tiny", "hunyuan_skip_block")]


@pytest.mark.parametrize("name,kind", CASES)
def test_formula_matches_hand_count(name: str, kind: str) -> None:
    m = load_model(name)
    assert layer_flops(m.arch, LayerShape(kind, Q, KV), text_tokens=m.text_tokens) == hand_count(name, kind)


def test_formula_scales_with_batch_and_shard() -> None:
    m = load_model("pixart-tiny")
    one = layer_flops(m.arch, LayerShape("pixart_block", Q, KV), text_tokens=m.text_tokens)
    assert layer_flops(m.arch, LayerShape("pixart_block", Q, KV, batch=2), text_tokens=m.text_tokens) == 2 * one
    assert layer_flops(m.arch, LayerShape("pixart_block", Q, KV, tensor_shard=2), text_tokens=m.text_tokens) == one / 2


@pytest.mark.parametrize("name", ["pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny", "hunyuan-tiny"])
def test_formula_matches_torch_flop_counter(name: str) -> None:
    torch = pytest.importorskip("torch")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from profiler.block_probe import ForwardCapture, stale_kv
    from runtime.model_build import build_transformer, transformer_blocks
    from runtime.forward_inputs import forward_inputs
    from profiler.compute import reduced_preset
    from runtime.families import adapter_for

    m = load_model(name)
    small = reduced_preset(m)
    model = build_transformer(m, config_overrides=small.config)
    blocks = transformer_blocks(model, m.family)
    kinds = small.arch.block_kinds()
    rows, cols = m.token_grid(256, 256)
    assert rows * cols == KV and rows // 4 * cols == Q
    inputs = forward_inputs(m, rows=rows // 4, cols=cols, batch=1, device="cpu", dtype=torch.float32)
    capture = ForwardCapture(model, blocks, time.perf_counter, lambda: None)
    with torch.inference_mode():
        try:
            model(**inputs)
        except RuntimeError:  # DiT's unpatchify wants a square grid; the blocks already ran
            assert name == "dit-tiny"
    capture.remove()
    for kind in dict.fromkeys(kinds):
        index = kinds.index(kind)
        args, kwargs = capture.calls[index]
        attentions = [attn for _, attn in adapter_for(m.family).attention_sites(blocks[index])]
        with stale_kv(attentions, KV - Q), torch.inference_mode(), sdpa_kernel(SDPBackend.MATH):
            with FlopCounterMode(display=False) as counter:
                blocks[index](*args, **kwargs)
        formula = layer_flops(m.arch, LayerShape(kind, Q, KV), text_tokens=m.text_tokens)
        assert counter.get_total_flops() == pytest.approx(formula, rel=0.01), kind
