"""Ulysses sequence parallelism inside the model: two all-to-alls around every self-attention.

Each of ``u`` ranks holds an equal band of the image's token rows through every block. At a
self-attention layer it projects its tokens' queries, keys and values for all heads; one
all-to-all trades heads for tokens, so each rank holds the *whole* sequence for ``h/u``
heads; attention over it is exact; a second all-to-all trades back, and the output
projection runs on the rank's own tokens again. Everything else in a block (MLP,
cross-attention to the replicated text, norms) is per token and needs no traffic.

Worked example, u = 2, h = 2, 8 tokens (4 per rank): rank 0 sends head 1 of tokens 0-3 to
rank 1 and keeps head 0; it receives head 0 of tokens 4-7. It now holds head 0 of tokens
0-7 (its band first: bands are in rank order), attends, and sends tokens 4-7 of head 0
back to rank 1, receiving head 1 of tokens 0-3.

Queries, keys and values travel in one all-to-all (stacked), so a layer makes 2 calls
moving the bytes of 4 (the simulator's ``4/u · S · hs`` per layer and rank). Rotary
embeddings (HunyuanDiT) are applied on the rank's own tokens before the exchange, so each
token keeps its position. Only the ``self`` attention kind has a Ulysses processor (the
family's adapter, :mod:`runtime.families`, says where each kind sits); joint attention
(SD3, Flux) would also need the text stream's heads gathered back; it is not implemented
(simulator/runnable.py says so).
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from runtime.dist_context import DistContext
from runtime.families import adapter_for, registry
from runtime.attention.stale_kv import image_qkv, self_attention_output


class UlyssesExchange:
    """The all-to-alls of one rank's Ulysses group, timed: the executor turns the intervals
    into ``collective`` spans and the rest of a pass into ``compute`` spans."""

    title = "Ulysses"
    span = "all_to_all"
    """The trace's name for one transfer (:func:`runtime.measure.record_pass`)."""

    def __init__(self, dist: DistContext, group: Any, degree: int, ranks: list[int], cuda: bool = False) -> None:
        self.dist, self.group, self.degree, self.ranks, self.cuda = dist, group, degree, ranks, cuda
        self.peers = ", ".join(f"rank {r}" for r in ranks if r != getattr(dist, "rank", None))
        """Who a failed exchange was waiting for, for the error line."""
        self.intervals: list[tuple[float, float, int]] = []
        """(start, end, bytes sent) of each all-to-all since the executor last took them."""

    def _exchange(self, send: torch.Tensor, what: str) -> torch.Tensor:
        # On CUDA the host returns before NCCL is done: synchronise on both sides of the call
        # so the span is the transfer, not its launch (as Recorder.span does for compute).
        if self.cuda:
            torch.cuda.current_stream().synchronize()
        start = time.perf_counter()
        out = self.dist.all_to_all(send, self.group, f"{what} with {self.peers}")
        if self.cuda:
            torch.cuda.current_stream().synchronize()
        self.intervals.append((start, time.perf_counter(), send.numel() * send.element_size()))
        return out

    def heads_to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(..., h, n, d) of this rank's tokens → (..., h/u, u·n, d) of every rank's tokens."""
        *lead, h, n, d = x.shape
        u = self.degree
        send = x.reshape(*lead, u, h // u, n, d).movedim(-4, 0)
        got = self._exchange(send, "Ulysses all-to-all (heads → sequence)")  # (u, ..., h/u, n, d): rank j's tokens
        return got.movedim(0, -3).reshape(*lead, h // u, u * n, d)

    def sequence_to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(..., h/u, u·n, d) → (..., h, n, d) of this rank's tokens."""
        *lead, hu, s, d = x.shape
        u = self.degree
        send = x.reshape(*lead, hu, u, s // u, d).movedim(-3, 0)
        got = self._exchange(send, "Ulysses all-to-all (sequence → heads)")  # (u, ..., h/u, n, d): head group j
        return got.movedim(0, -4).reshape(*lead, u * hu, s // u, d)


class UlyssesSelfAttnProcessor:
    """Image self-attention (the ``self`` kind: PixArt, DiT, HunyuanDiT) over the whole sequence."""

    def __init__(self, exchange: UlyssesExchange) -> None:
        self.x = exchange

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, temb: Any = None, image_rotary_emb: Any = None,
                 **_: Any) -> torch.Tensor:
        if attention_mask is not None:
            raise NotImplementedError("the Ulysses processor runs unmasked self-attention only")
        q, k, v = image_qkv(attn, hidden_states)  # (B, h, n, d)
        if image_rotary_emb is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            q, k = apply_rotary_emb(q, image_rotary_emb), apply_rotary_emb(k, image_rotary_emb)
        q, k, v = self.x.heads_to_sequence(torch.stack([q, k, v])).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)  # as AttnProcessor2_0
        out = self.x.sequence_to_heads(out)  # (B, h, n, d)
        b, h, n, d = out.shape
        merged = out.transpose(1, 2).reshape(b, n, h * d).to(q.dtype)
        return self_attention_output(attn, merged, hidden_states)


ULYSSES_PROCESSORS: Mapping[str, type] = MappingProxyType({"self": UlyssesSelfAttnProcessor})
"""The Ulysses processor of each attention kind (:data:`runtime.families.ProcessorKind`)."""


def ulysses_families() -> list[str]:
    """Families whose every attention kind has a Ulysses processor."""
    return [name for name, adapter in registry().items() if adapter.processor_kinds <= ULYSSES_PROCESSORS.keys()]


def install_ulysses(family: str, blocks: list[Any], exchange: UlyssesExchange) -> int:
    """Swap each block's self-attention processor for the Ulysses one; returns how many."""
    adapter = adapter_for(family)
    missing = sorted(adapter.processor_kinds - ULYSSES_PROCESSORS.keys())
    if missing:
        raise NotImplementedError(f"no Ulysses processor for family {family!r} ({', '.join(missing)} attention); "
                                  f"families: {', '.join(ulysses_families())}")
    for block in blocks:
        for kind, attn in adapter.attention_sites(block):
            attn.set_processor(ULYSSES_PROCESSORS[kind](exchange))
    return len(blocks)
