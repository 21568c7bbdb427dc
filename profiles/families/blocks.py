"""Formulas several families share: parameter counts of common layers, FLOPs of common blocks.

PixArt and HunyuanDiT blocks are self-attention + cross-attention + MLP; SD3's joint block
and Flux's double-stream block are the same MMDiT block; DiT, PixArt and HunyuanDiT share
their self-attention's K/V use. Written once here, used by the family modules (this module
defines no ``SPEC``, so the registry skips it). Symbols as in :mod:`profiles.costs.flops`.
"""

from __future__ import annotations

from profiles.catalog.architecture import Architecture, lin
from profiles.families.spec import Tokens


def ada_zero(h: int) -> int:
    """Parameters of an AdaLN-Zero modulation (one linear to six h-wide vectors)."""
    return lin(h, 6 * h)


def timestep_embedding(h: int) -> int:
    """Parameters of diffusers' ``TimestepEmbedding`` from 256 sinusoidal channels."""
    return lin(256, h) + lin(h, h)


def joint_block_params(h: int, d: int, *, qk_norm: bool, last: bool) -> int:
    """An SD3 / Flux double-stream block: two AdaLN-Zero, joint attention, two MLPs."""
    ff = lin(h, 4 * h) + lin(4 * h, h)
    norm_context = lin(h, 2 * h) if last else ada_zero(h)
    attention = 7 * lin(h, h) + (0 if last else lin(h, h))
    return ada_zero(h) + norm_context + attention + (4 * d if qk_norm else 0) + ff + (0 if last else ff)


def self_attention_kv_flops(arch: Architecture, n: Tokens) -> int:
    """Self-attention over the image keys: 4q·k·h (the cross-attention reads text K/V)."""
    return 4 * n.query * n.kv * arch.hidden_size


def cross_block_flops(arch: Architecture, n: Tokens) -> int:
    """Self-attn 2q·4h² + 4q·k·h; cross-attn 2q·2h² + 2t·2c·h + 4q·t·h; MLP 2q·2h·f."""
    h, f, c = arch.hidden_size, arch.ffn_inner, max(arch.text_width, 1)
    q, k, t = n.query, n.kv, n.text
    flops = 2 * q * 4 * h * h + 4 * q * k * h
    flops += 2 * q * 2 * h * h + 2 * t * 2 * c * h + 4 * q * t * h
    return flops + 2 * q * 2 * h * f


def cross_text_only_flops(arch: Architecture, n: Tokens) -> tuple[int, int]:
    """The cross-attention's text K/V projections (2t·2c·h): ``t`` rows whatever the image queries."""
    return 2 * n.text * 2 * max(arch.text_width, 1) * arch.hidden_size, n.text


def joint_block_flops(arch: Architecture, n: Tokens) -> int:
    """Image and text streams: 2(q+tq)·4h² projections, attention 4(q+tq)(k+t)·h, MLPs 2(q+tq)·2h·f."""
    h, f = arch.hidden_size, arch.ffn_inner
    tokens = n.query + n.text_query
    return 2 * tokens * 4 * h * h + 4 * tokens * (n.kv + n.text) * h + 2 * tokens * 2 * h * f


def joint_attention_flops(arch: Architecture, n: Tokens) -> int:
    """The whole joint attention, 4(q+tq)(k+t)·h: all of it consumes the image K/V."""
    return 4 * (n.query + n.text_query) * (n.kv + n.text) * arch.hidden_size
