"""Cut one block down to what one rank of an ``s``-way tensor-parallel group computes.

Megatron-style tensor parallelism splits attention by heads and the MLP by its inner
width: the Q/K/V projections and the MLP's first layer keep ``1/s`` of their outputs, the
output projections keep ``1/s`` of their inputs (their partial sums are all-reduced, which
the simulator prices as communication). Norms and AdaLN modulations stay whole. The
profiler times such a narrowed copy to get the ``tensor_shard=s`` rows of a profile; the
weights are slices of the real ones, so the work (not the numbers) is what matters.

Only the profiler imports this (torch).
"""

from __future__ import annotations

import copy
from typing import Any

OUT_SPLIT = ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")
IN_SPLIT = ("to_add_out",)


def _narrow(linear: Any, *, out_keep: int | None = None, in_keep: int | None = None) -> Any:
    import torch

    weight = linear.weight.detach()
    out_f = out_keep or weight.shape[0]
    in_f = in_keep or weight.shape[1]
    new = torch.nn.Linear(in_f, out_f, bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight[:out_f, :in_f])
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach()[:out_f])
    return new


def _shard_attention(attn: Any, s: int) -> None:
    heads = attn.heads
    if heads % s:
        raise ValueError(f"tensor shard {s} does not divide heads({heads})")
    for name in OUT_SPLIT:
        layer = getattr(attn, name, None)
        if layer is not None:
            setattr(attn, name, _narrow(layer, out_keep=layer.out_features // s))
    for name in IN_SPLIT:
        layer = getattr(attn, name, None)
        if layer is not None:
            setattr(attn, name, _narrow(layer, in_keep=layer.in_features // s))
    to_out = getattr(attn, "to_out", None)
    if to_out is not None:
        to_out[0] = _narrow(to_out[0], in_keep=to_out[0].in_features // s)
    attn.heads = heads // s
    if hasattr(attn, "inner_dim"):
        attn.inner_dim = attn.inner_dim // s


def _shard_feed_forward(ff: Any, s: int) -> None:
    first = ff.net[0].proj
    ff.net[0].proj = _narrow(first, out_keep=first.out_features // s)
    last = ff.net[2]
    ff.net[2] = _narrow(last, in_keep=last.in_features // s)


def shard_block(block: Any, s: int) -> Any:
    """A copy of ``block`` narrowed to one of ``s`` tensor-parallel ranks (``s=1``: the block)."""
    if s == 1:
        return block
    from diffusers.models.attention import FeedForward

    block = copy.deepcopy(block)
    for module in list(block.modules()):
        if hasattr(module, "heads") and hasattr(module, "to_q"):
            _shard_attention(module, s)
        elif isinstance(module, FeedForward):
            _shard_feed_forward(module, s)
    if hasattr(block, "proj_mlp") and hasattr(block, "proj_out"):  # Flux single-stream block
        hidden = block.proj_out.out_features
        mlp = block.proj_mlp.out_features
        block.proj_mlp = _narrow(block.proj_mlp, out_keep=mlp // s)
        block.proj_out = _narrow(block.proj_out, in_keep=(hidden + mlp) // s)
        # proj_out reads [attention (hidden/s) | mlp (mlp/s)]: the narrowed width matches.
    return block
