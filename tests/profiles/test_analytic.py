"""The analytic roofline: efficiency follows the work per call, however the call was made smaller.

Tensor parallel shrinks a layer call's width, the sequence-parallel strategies its tokens;
both must lose efficiency alike, and no shape may ever take less time for more work.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiles.costs.analytic import AnalyticCostModel
from profiles.costs.cost_model import EMBED, FINAL, LayerShape
from profiles.costs.flops import attention_flops, layer_flops, text_only_flops
from profiles.catalog.models import load_model

PRESETS = ["pixart-alpha", "sd3-medium", "flux-dev", "dit-xl-2", "hunyuan-dit"]


@cache
def analytic(name: str, gpu: str) -> AnalyticCostModel:
    return AnalyticCostModel.for_gpu(load_model(name), gpu)


@cache
def kinds(name: str) -> list[str]:
    return [EMBED, *dict.fromkeys(load_model(name).arch.block_kinds()), FINAL]


@pytest.mark.parametrize("s", [2, 4, 8])
def test_tensor_shard_loses_efficiency_like_a_token_split(s: int) -> None:
    """DiT's FLOPs at shard s equal those of q/s queries (no text): same compute-bound time."""
    dit = load_model("dit-xl-2")
    cost = AnalyticCostModel.for_gpu(dit, "a100-pcie")
    q = 4096
    sharded = cost.layer_time_s(LayerShape("dit_block", q, q, tensor_shard=s))
    split = cost.layer_time_s(LayerShape("dit_block", q // s, q))
    assert sharded == pytest.approx(split, rel=1e-12)
    # and both lose efficiency: s calls of the small shape take longer than one whole call
    assert s * split > cost.layer_time_s(LayerShape("dit_block", q, q))


def test_efficiency_of_a_call_counts_full_width_token_equivalents() -> None:
    """At shard s a call of n tokens runs at e(n/s) (the old curve used e(n): TP kept full efficiency)."""
    dit = load_model("dit-xl-2")
    cost = AnalyticCostModel.for_gpu(dit, "h100-sxm")
    eff = cost.efficiency
    q, s = 2048, 4
    shape = LayerShape("dit_block", q, q, tensor_shard=s)
    n = q / s
    rate = cost.gpu.peak_tflops * 1e12 * eff.max_efficiency * n / (n + eff.half_efficiency_tokens)
    expected = layer_flops(dit.arch, shape, text_tokens=dit.text_tokens) / rate
    assert cost.layer_time_s(shape) == pytest.approx(expected, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(PRESETS), pick=st.integers(0, 10), q=st.integers(1, 20000), dq=st.integers(0, 5000),
       k=st.integers(1, 70000), dk=st.integers(0, 5000), batch=st.integers(1, 2), s=st.sampled_from([1, 2, 4, 8]),
       gpu=st.sampled_from(["a100-pcie", "h100-sxm", "l20"]))
def test_more_work_never_takes_less_time(name, pick, q, dq, k, dk, batch, s, gpu) -> None:
    kind = kinds(name)[pick % len(kinds(name))]
    cost = analytic(name, gpu)
    base = cost.layer_time_s(LayerShape(kind, q, k, batch, s))
    assert cost.layer_time_s(LayerShape(kind, q + dq, k, batch, s)) >= base
    assert cost.layer_time_s(LayerShape(kind, q, k + dk, batch, s)) >= base
    assert cost.layer_time_s(LayerShape(kind, q, k, batch + 1, s)) >= base
    if s > 1:  # a bigger shard of the same layer is less work per rank
        assert cost.layer_time_s(LayerShape(kind, q, k, batch, s // 2)) >= base


@pytest.mark.parametrize("name", PRESETS + ["pixart-tiny", "flux-tiny"])
def test_attention_and_text_parts_are_parts_of_the_layer(name: str) -> None:
    model = load_model(name)
    for kind in kinds(name):
        shape = LayerShape(kind, 512, 4096, 2, 2)
        total = layer_flops(model.arch, shape, text_tokens=model.text_tokens)
        attention = attention_flops(model.arch, shape, text_tokens=model.text_tokens)
        text, _ = text_only_flops(model.arch, shape, text_tokens=model.text_tokens)
        assert 0 <= attention < total and 0 <= text < total
        assert attention + text < total


def test_attention_flops_hand_counts() -> None:
    pixart, flux = load_model("pixart-alpha"), load_model("flux-dev")
    q, k = 1024, 4096
    h = pixart.arch.hidden_size
    assert attention_flops(pixart.arch, LayerShape("pixart_block", q, k), text_tokens=pixart.text_tokens) \
        == 4 * q * k * h  # self-attention only: cross-attention reads text K/V
    h, t = flux.arch.hidden_size, flux.text_tokens
    for kind in ("flux_double_block", "flux_single_block"):
        assert attention_flops(flux.arch, LayerShape(kind, q, k), text_tokens=t) == 4 * (q + t) * (k + t) * h
    assert attention_flops(flux.arch, LayerShape(EMBED, q, k), text_tokens=t) == 0
