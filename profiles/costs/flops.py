"""Floating-point operations and memory traffic of each layer kind, from its dimensions.

Counts are multiply-adds × 2 of the matrix products (projections, attention scores and
weighted sums, MLPs); norms, activations, softmax and the AdaLN modulation projections
(which act on one timestep vector per image, not per token) are left out.
``tests/profiles/test_flops.py`` checks every block kind against a hand count and against
``torch.utils.flop_counter`` on the real diffusers block.
The block formulas live with their family (:mod:`profiles.families`: each
:class:`~profiles.families.spec.BlockKind` carries its own); this module prices the
embedding and the output layer, which every family shares, and scales a block's count by
the batch and the tensor-parallel shard.
Symbols as in :mod:`profiles.catalog.architecture`; ``q`` image query tokens, ``k`` image key/value
tokens, ``t`` text tokens attended, ``tq`` text tokens whose projections run here,
``s`` tensor-parallel shard.

Per block, one image (batch multiplies everything), for the families shipped today (each
formula's docstring in its family module repeats its row):

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

from profiles.catalog.architecture import Architecture
from profiles.costs.cost_model import EMBED, FINAL, LayerShape
from profiles.errors import InputError
from profiles.families.spec import Tokens


def _tokens(shape: LayerShape, text_tokens: int) -> Tokens:
    tq = text_tokens if shape.text_query_tokens is None else shape.text_query_tokens
    return Tokens(shape.query_tokens, shape.kv_tokens, text_tokens, tq)


def is_joint(arch: Architecture, kind: str) -> bool:
    """Whether ``kind`` runs the model's text tokens through its projections beside the image tokens."""
    return arch.spec is not None and arch.spec.is_joint(kind)


def layer_flops(arch: Architecture, shape: LayerShape, *, text_tokens: int) -> float:
    """FLOPs of one forward of ``shape.kind`` (see the table above)."""
    h, c = arch.hidden_size, max(arch.text_width, 1)
    n = _tokens(shape, text_tokens)
    if shape.kind == EMBED:
        # patch embedding (latent patch → h) and the text projection of the text tokens.
        per = 2 * n.query * arch.latent_channels * arch.patch_size ** 2 * h + 2 * n.text_query * c * h
        return float(shape.batch * per)
    if shape.kind == FINAL:
        return float(shape.batch * 2 * n.query * h * (arch.patch_size ** 2 * arch.latent_channels * 2 + 2 * h))
    flops = arch.block_kind(shape.kind).flops(arch, n)
    return float(shape.batch * flops / shape.tensor_shard)


def text_only_flops(arch: Architecture, shape: LayerShape, *, text_tokens: int) -> tuple[float, int]:
    """``(FLOPs, rows)`` of the part of :func:`layer_flops` whose matmuls run on text tokens alone.

    Cross-attention blocks (PixArt, HunyuanDiT) project the text to keys and values
    (2t·2c·h) and the embedding projects the text (2tq·c·h) whatever the number of image
    queries: separate matmuls with ``t`` rows (per image; ``rows`` is per image too), which a
    cost model must not price as part of the image-query work. 0 for every other kind (joint
    blocks run their text rows beside the image rows, counted in their query tokens).
    """
    h, c = arch.hidden_size, max(arch.text_width, 1)
    n = _tokens(shape, text_tokens)
    if shape.kind == EMBED:
        return float(shape.batch * 2 * n.text_query * c * h), n.text_query
    if shape.kind == FINAL:
        return 0.0, 0
    block = arch.spec.find_block(shape.kind) if arch.spec is not None else None
    if block is None:
        return 0.0, 0
    flops, rows = block.text_only_flops(arch, n)
    if not rows:
        return 0.0, 0
    return float(shape.batch * flops / shape.tensor_shard), rows


def attention_flops(arch: Architecture, shape: LayerShape, *, text_tokens: int) -> float:
    """FLOPs of the attention products (QKᵀ and the weighted sum of V) over the image keys.

    This is the part of :func:`layer_flops` that consumes the layer's image K/V: the
    self-attention of PixArt, HunyuanDiT and DiT (4q·k·h; their cross-attention reads text
    K/V and is left out), and the whole joint attention of SD3 and Flux (4(q+tq)(k+t)·h).
    Its share of :func:`layer_flops` is how much of a layer's compute can hide a transfer
    of that layer's K/V (Ring attention); projections and MLPs cannot, since the K/V do not
    exist before the projections and are no longer needed after the attention.
    """
    if shape.kind in (EMBED, FINAL):
        return 0.0
    flops = arch.block_kind(shape.kind).attention_flops(arch, _tokens(shape, text_tokens))
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
