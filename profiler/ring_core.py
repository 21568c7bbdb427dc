"""Ring attention's attention core as the runtime runs it, against the SDPA call the layer table times.

The layer table prices a block whose attention is one ``scaled_dot_product_attention`` over
all keys. pfrun's Ring (``runtime/attention/ring.py``) runs, per attention layer, one
``partial_attention`` per K/V block (explicit scores, log-sum-exp, exp, a second matmul) and
an online-softmax ``merge`` between them: on CPU several times the fused SDPA call for the
same FLOPs (a two-rank Ring plan was predicted 25 % fast on 2026-12-02 with the merges priced as
elementwise kernels). This times the runtime's own two functions and SDPA on one rank's share
(queries ``S/r``, key blocks ``S/r``, the preset's heads and head dim) so the simulator can
charge the difference (:meth:`profiles.costs.profiled.ProfiledCostModel.ring_attention_excess_s`).
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

from profiles.catalog.models import ModelPreset
from profiles.costs.profile_format import RingAttentionTiming


def time_ring_core(preset: ModelPreset, *, resolution_px: int, degrees: tuple[int, ...], batches: tuple[int, ...],
                   samples: Callable[[Callable[[], Any]], list[float]], device: str, dtype: Any,
                   seed: int) -> list[RingAttentionTiming]:
    """One entry per (degree dividing the image tokens, batch)."""
    import torch
    import torch.nn.functional as F

    from runtime.attention import ring as runtime_ring

    accumulation_dtype, merge, partial_attention = (runtime_ring.accumulation_dtype, runtime_ring.merge,
                                                    runtime_ring.partial_attention)

    tokens = preset.image_tokens(resolution_px)
    heads, head_dim = preset.arch.heads, preset.arch.head_dim
    acc = accumulation_dtype(dtype)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for degree in degrees:
        if degree < 2 or tokens % degree:
            continue
        share = tokens // degree
        for batch in batches:
            def draw(n: int) -> torch.Tensor:
                return torch.randn(batch, heads, n, head_dim, generator=gen).to(device, dtype)

            q, k_block, v_block, k_all, v_all = draw(share), draw(share), draw(share), draw(tokens), draw(tokens)
            qa, ka, va = q.to(acc), k_block.to(acc), v_block.to(acc)
            o1, l1 = partial_attention(qa, ka, va)
            runs = [samples(lambda: partial_attention(qa, ka, va)), samples(lambda: merge(o1, l1, o1, l1)),
                    samples(lambda: F.scaled_dot_product_attention(q, k_all, v_all))]
            partial, merged, sdpa = (statistics.median(r) for r in runs)
            out.append(RingAttentionTiming(degree=degree, batch=batch, query_tokens=share, kv_tokens=tokens,
                                           partial_s=partial, merge_s=merged, sdpa_s=sdpa,
                                           excess_s=degree * partial + (degree - 1) * merged - sdpa,
                                           repeats=min(len(r) for r in runs)))
    return out
