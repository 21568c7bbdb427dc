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
token keeps its position. The processors are :mod:`runtime.attention.sequence`'s (one per
attention kind: self, SD3's joint, Flux's); this module is their Ulysses core. Joint
attention (SD3, Flux): the text is replicated, each rank attends its ``h/u`` heads of it
with the image, and the text output's heads come back inside the second all-to-all, so the
call count stays 2 (the bytes grow by the text's ``(u−1)/u · nt · hs``).
Why not diffusers' context parallelism: see docs/runtime.md, "Joint attention".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from runtime.attention.kv_state import KVState
from runtime.attention.sequence import LocalAttention, SequenceAttention, TextQKV
from runtime.attention.sequence_group import Behind, GroupKVBuffer, StaleLayout
from runtime.dist_context import DistContext


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

    def sequence_to_heads_with_text(self, x: torch.Tensor,
                                    text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sequence_to_heads` of the image output, with this rank's heads of the text
        output (..., h/u, nt, d) riding along to every rank: (..., h, n, d) and (..., h, nt, d)."""
        *lead, hu, s, d = x.shape
        u, nt = self.degree, text.shape[-2]
        image = x.reshape(*lead, hu, u, s // u, d).movedim(-3, 0)  # (u, ..., h/u, n, d)
        send = torch.cat([image, text.unsqueeze(0).expand(u, *text.shape)], dim=-2)
        got = self._exchange(send, "Ulysses all-to-all (sequence → heads, with the text)")
        got = got.movedim(0, -4).reshape(*lead, u * hu, s // u + nt, d)
        return got[..., :s // u, :], got[..., s // u:, :]

    def sequence_to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(..., h/u, u·n, d) → (..., h, n, d) of this rank's tokens."""
        *lead, hu, s, d = x.shape
        u = self.degree
        send = x.reshape(*lead, hu, u, s // u, d).movedim(-3, 0)
        got = self._exchange(send, "Ulysses all-to-all (sequence → heads)")  # (u, ..., h/u, n, d): head group j
        return got.movedim(0, -4).reshape(*lead, u * hu, s // u, d)


class UlyssesAttention:
    """The Ulysses core: this rank's band for all heads → the group's whole sequence for ``h/u``
    heads, attended by ``inner`` (:class:`~runtime.attention.sequence.LocalAttention`, or a Ring
    core for USP), and back. Text (joint attention) is replicated: the rank keeps its heads'
    slice of the text Q/K/V (no traffic), and the text output's heads travel home inside the
    second all-to-all (each rank receives every head group's text output: an all-gather)."""

    def __init__(self, exchange: UlyssesExchange, index: int, inner: SequenceAttention | None = None) -> None:
        self.x, self.index = exchange, index
        self.inner: SequenceAttention = inner if inner is not None else LocalAttention()

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text: TextQKV | None,
               text_first: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k, v = self.x.heads_to_sequence(torch.stack([q, k, v])).unbind(0)
        if text is not None:
            hu = q.shape[1]
            text = tuple(t[:, self.index * hu:(self.index + 1) * hu] for t in text)  # type: ignore[assignment]
        out, text_out = self.inner.attend(q, k, v, text, text_first)
        if text_out is None:
            return self.x.sequence_to_heads(out), None
        return self.x.sequence_to_heads_with_text(out, text_out)


@dataclass(frozen=True)
class UlyssesMember:
    """Ulysses as a member of a rank's :class:`~runtime.attention.sequence_group.SequenceGroup`:
    it wraps the core of the members outside it in the mesh (USP: Ring), or attends locally."""

    exchange: UlyssesExchange
    index: int

    @property
    def degree(self) -> int:
        return self.exchange.degree

    def core(self, inner: SequenceAttention | None, state: KVState, stale: StaleLayout | None,
             behind: Behind) -> SequenceAttention:
        if inner is None:  # the buffer sits behind this exchange: it sees the group's tokens
            mine = Behind(self.degree * behind.degree, self.index * behind.degree + behind.index)
            inner = LocalAttention(GroupKVBuffer(state, mine) if stale is not None else None)
        return UlyssesAttention(self.exchange, self.index, inner)
