"""Floating-point operations and memory traffic of each layer kind, from its dimensions.

Counts are multiply-adds × 2 of the matrix products (projections, attention scores and
weighted sums, MLPs); norms, activations, softmax and the AdaLN modulation projections
(which act on one timestep vector per image, not per token) are left out.
``tests/profiles/test_flops.py`` checks every block kind against a hand count and against
``torch.utils.flop_counter`` on the real diffusers block.
Symbols as in :mod:`profiles.architecture`; ``q`` image query tokens, ``k`` image key/value
tokens, ``t`` text tokens attended, ``tq`` text tokens whose projections run here,
``s`` tensor-parallel shard.

Per block, one image (batch multiplies everything):

============================  =============================================================
pixart_block                  self-attn 2q·4h² + 4q·k·h; cross-attn 2q·2h² + 2t·2c·h +
                              4q·t·h; MLP 2q·2h·f
sd3/flux double (joint)       image and text streams: 2(q+tq)·4h² projections; attention
                              4(q+tq)(k+t)·h; two MLPs 2(q+tq)·2h·f
sd3_joint_block_last          as joint, but the text stream (context_pre_only) has no
                              output projection and no MLP: 2tq·3h² + 2q·4h² + 4(q+tq)(k+t)·h
                              + 2q·2h·f
flux_single_block             2(q+tq)·h·(3h+f) + 2(q+tq)·(h+f)·h + 4(q+tq)(k+t)·h
dit_block                     2q·4h² + 4q·k·h + 2q·2h·f
hunyuan_block                 as pixart_block with cross width c (+ skip: 2q·2h·h)
============================  =============================================================
"""

from __future__ import annotations

from profiles.architecture import Architecture
from profiles.cost_model import EMBED, FINAL, LayerShape
from profiles.errors import InputError

JOINT_ATTENTION_KINDS = ("sd3_joint_block", "sd3_joint_block_last", "flux_double_block", "flux_single_block")
"""Blocks whose text tokens run through the projections and attention beside the image tokens."""


def layer_flops(arch: Architecture, shape: LayerShape, *, text_tokens: int) -> float:
    """FLOPs of one forward of ``shape.kind`` (see the table above)."""
    h, f, c = arch.hidden_size, arch.ffn_inner, max(arch.text_width, 1)
    s = shape.tensor_shard
    q, k = shape.query_tokens, shape.kv_tokens
    t = text_tokens
    tq = t if shape.text_query_tokens is None else shape.text_query_tokens
    kind = shape.kind
    if kind == EMBED:
        # patch embedding (latent patch → h) and the text projection of the text tokens.
        per = 2 * q * arch.latent_channels * arch.patch_size ** 2 * h + 2 * tq * c * h
        return float(shape.batch * per)
    if kind == FINAL:
        return float(shape.batch * 2 * q * h * (arch.patch_size ** 2 * arch.latent_channels * 2 + 2 * h))
    if kind in ("pixart_block", "hunyuan_block", "hunyuan_skip_block"):
        flops = 2 * q * 4 * h * h + 4 * q * k * h
        flops += 2 * q * 2 * h * h + 2 * t * 2 * c * h + 4 * q * t * h
        flops += 2 * q * 2 * h * f
        if kind == "hunyuan_skip_block":
            flops += 2 * q * 2 * h * h
    elif kind in ("sd3_joint_block", "flux_double_block"):
        tokens = q + tq
        flops = 2 * tokens * 4 * h * h + 4 * tokens * (k + t) * h + 2 * tokens * 2 * h * f
    elif kind == "sd3_joint_block_last":
        flops = 2 * q * 4 * h * h + 2 * tq * 3 * h * h + 4 * (q + tq) * (k + t) * h + 2 * q * 2 * h * f
    elif kind == "flux_single_block":
        tokens = q + tq
        flops = 2 * tokens * h * (3 * h + f) + 2 * tokens * (h + f) * h + 4 * tokens * (k + t) * h
    elif kind == "dit_block":
        flops = 2 * q * 4 * h * h + 4 * q * k * h + 2 * q * 2 * h * f
    else:
        raise InputError(f"no FLOP formula for layer kind {kind!r}", field="kind")
    return float(shape.batch * flops / s)


def text_only_flops(arch: Architecture, shape: LayerShape, *, text_tokens: int) -> tuple[float, int]:
    """``(FLOPs, rows)`` of the part of :func:`layer_flops` whose matmuls run on text tokens alone.

    Cross-attention blocks (PixArt, HunyuanDiT) project the text to keys and values
    (2t·2c·h) and the embedding projects the text (2tq·c·h) whatever the number of image
    queries: separate matmuls with ``t`` rows (per image; ``rows`` is per image too), which a
    cost model must not price as part of the image-query work. 0 for every other kind (joint
    blocks run their text rows beside the image rows, counted in their query tokens).
    """
    h, c = arch.hidden_size, max(arch.text_width, 1)
    t = text_tokens
    tq = t if shape.text_query_tokens is None else shape.text_query_tokens
    if shape.kind == EMBED:
        return float(shape.batch * 2 * tq * c * h), tq
    if shape.kind in ("pixart_block", "hunyuan_block", "hunyuan_skip_block"):
        return float(shape.batch * 2 * t * 2 * c * h / shape.tensor_shard), t
    return 0.0, 0


def attention_flops(arch: Architecture, shape: LayerShape, *, text_tokens: int) -> float:
    """FLOPs of the attention products (QKᵀ and the weighted sum of V) over the image keys.

    This is the part of :func:`layer_flops` that consumes the layer's image K/V: the
    self-attention of PixArt, HunyuanDiT and DiT (4q·k·h; their cross-attention reads text
    K/V and is left out), and the whole joint attention of SD3 and Flux (4(q+tq)(k+t)·h).
    Its share of :func:`layer_flops` is how much of a layer's compute can hide a transfer
    of that layer's K/V (Ring attention); projections and MLPs cannot, since the K/V do not
    exist before the projections and are no longer needed after the attention.
    """
    h = arch.hidden_size
    q, k = shape.query_tokens, shape.kv_tokens
    t = text_tokens
    tq = t if shape.text_query_tokens is None else shape.text_query_tokens
    kind = shape.kind
    if kind in (EMBED, FINAL):
        return 0.0
    if kind in ("pixart_block", "hunyuan_block", "hunyuan_skip_block", "dit_block"):
        flops = 4 * q * k * h
    elif kind in JOINT_ATTENTION_KINDS:
        flops = 4 * (q + tq) * (k + t) * h
    else:
        raise InputError(f"no FLOP formula for layer kind {kind!r}", field="kind")
    return float(shape.batch * flops / shape.tensor_shard)


def layer_weight_bytes(arch: Architecture, kind: str, *, dtype_bytes: int, tensor_shard: int = 1) -> float:
    """Bytes of weights one forward reads (each weight once)."""
    if kind == EMBED:
        params = arch.embed_params
    elif kind == FINAL:
        params = arch.final_params
    else:
        by_kind = {g.kind: g.params for g in arch.blocks}
        if kind not in by_kind:
            raise InputError(f"layer kind {kind!r} is not in this model ({', '.join(by_kind)})", field="kind")
        params = by_kind[kind]
    return params * dtype_bytes / tensor_shard


def layer_activation_bytes(arch: Architecture, shape: LayerShape, *, text_tokens: int, dtype_bytes: int) -> float:
    """Rough activation traffic: about a dozen reads/writes of a token × hidden tensor, plus K/V read."""
    tq = text_tokens if shape.text_query_tokens is None else shape.text_query_tokens
    h = arch.hidden_size / shape.tensor_shard
    rows = shape.query_tokens + tq
    return float(shape.batch * dtype_bytes * h * (12 * rows + 2 * (shape.kv_tokens + text_tokens)))
