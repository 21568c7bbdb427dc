"""Ring attention inside the model: K/V blocks travel around the ring, partial softmaxes merge.

Each of ``r`` ranks holds an equal band of the image's token rows through every block. At a
self-attention layer it projects its own tokens' queries, keys and values (rotary embeddings,
HunyuanDiT, go on its own tokens first, so each key keeps its position). The K/V block then
makes ``r − 1`` hops around the ring (rank ``i`` sends to ``i + 1`` and receives from
``i − 1``, in one batched isend/irecv so NCCL does not serialise the pair); while block
``j + 1`` travels the rank computes the partial attention of its queries against block ``j``
and merges it into the running result with an online softmax:

    lse = logaddexp(lse₁, lse₂),   out = e^(lse₁ − lse)·out₁ + e^(lse₂ − lse)·out₂

where ``out_i`` is the softmax-normalised attention over block ``i`` alone and ``lse_i`` the
log of its softmax denominator (flash and ring attention keep the same pair). After the
last block the merged ``out`` is exactly softmax attention over all keys (up to float order),
so the result equals serial.

Worked example, r = 2, 8 tokens: rank 0 holds queries and K/V of tokens 0-3; it sends its
K/V to rank 1 while attending over them, receives K/V of tokens 4-7, attends over those and
merges: each rank sends one block per layer, ``2 · n/r · hidden`` values (the simulator's
``ring_pass``). What the trace calls the hop is the time the rank *waits* for it (the
exposed part; the rest hides behind the partial attention), so compute and collective spans
never overlap, as the Ulysses executor records them.

Why our own and not diffusers' context parallelism: diffusers 0.42 carries a ``_cp_plan`` only
on Flux among our families; PixArt's, DiT's and HunyuanDiT's processors call torch's SDPA
directly, so its ring hook cannot reach them; its ring all-gathers every K/V block at once
(``rotate_method="allgather"``) rather than passing blocks; and ``enable_parallelism`` needs
an accelerator (on CPU it divides by ``torch.accelerator.device_count()`` = 0). See
docs/runtime.md, "Ring" (and "Joint attention": its native CPU backend has no log-sum-exp,
which its ring needs).

The processors are :mod:`runtime.attention.sequence`'s, one per attention kind; this module
is their Ring core (:class:`RingAttention`). Joint attention (SD3, Flux): the replicated
text's K/V are joined on every rank, its queries attended on every rank.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from runtime.attention.kv_state import KVState
from runtime.attention.sequence import SequenceAttention, TextQKV
from runtime.attention.sequence_group import Behind, StaleLayout
from runtime.dist_context import DistContext, PeerFailure


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype partial results are computed and merged in: float32 for half precisions (as
    diffusers' ``convert_to_fp32``), else the model's own (float64 partials were tried on the
    float32 tiny presets: they did not bring the runs any closer to serial)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def partial_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of ``q`` (..., n, d) over one K/V block (..., m, d), and its log-sum-exp (..., n, 1)."""
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)
    return torch.exp(scores - lse) @ v, lse


def merge(out: torch.Tensor | None, lse: torch.Tensor | None, out_b: torch.Tensor,
          lse_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The online-softmax merge of two partial results over disjoint key blocks (``out`` None: the first)."""
    if out is None or lse is None:
        return out_b, lse_b
    new = torch.logaddexp(lse, lse_b)
    return torch.exp(lse - new) * out + torch.exp(lse_b - new) * out_b, new


class RingExchange:
    """The K/V hops of one rank's ring group, timed: the executor turns each wait into a
    ``collective`` span (bytes sent) and the rest of a pass into ``compute`` spans."""

    title = "Ring"
    span = "ring_pass"

    def __init__(self, dist: DistContext, group: Any, degree: int, ranks: list[int], index: int,
                 cuda: bool = False) -> None:
        self.dist, self.group, self.degree, self.ranks, self.cuda = dist, group, degree, ranks, cuda
        self.index = index
        self.next, self.prev = ranks[(index + 1) % degree], ranks[(index - 1) % degree]
        self.peers = ", ".join(f"rank {r}" for r in ranks if r != getattr(dist, "rank", None))
        self.intervals: list[tuple[float, float, int]] = []
        """(start, end, bytes sent) of each wait for a hop since the executor last took them."""

    def start(self, block: torch.Tensor) -> tuple[list[Any], torch.Tensor, torch.Tensor]:
        """Send ``block`` to the next rank and receive the previous rank's into a new buffer."""
        import torch.distributed as dist

        block = block.contiguous()  # gloo raises on the sender, and hangs the receiver, otherwise
        got = torch.empty_like(block)
        try:
            works = dist.batch_isend_irecv([dist.P2POp(dist.isend, block, self.next, self.group),
                                            dist.P2POp(dist.irecv, got, self.prev, self.group)])
        except Exception as exc:  # noqa: BLE001 - gloo raises RuntimeError subclasses of several kinds
            raise PeerFailure(f"rank {self.dist.rank}: Ring K/V hop failed: {exc}") from None
        return works, block, got

    def finish(self, pending: tuple[list[Any], torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Wait for a hop started by :meth:`start` (the wait is recorded); the received block."""
        works, sent, got = pending
        if self.cuda:
            torch.cuda.current_stream().synchronize()
        start = time.perf_counter()
        for work in works:
            try:
                work.wait(timeout=timedelta(seconds=self.dist.timeout_s))
            except Exception as exc:  # noqa: BLE001
                raise PeerFailure(f"rank {self.dist.rank}: Ring K/V hop (to rank {self.next}, from rank "
                                  f"{self.prev}) failed: {str(exc).splitlines()[0][:200]}") from None
        if self.cuda:
            torch.cuda.current_stream().synchronize()
        self.intervals.append((start, time.perf_counter(), sent.numel() * sent.element_size()))
        return got

    def hops(self, block: torch.Tensor):
        """Yield ``(source index, block)`` for this rank's ``block`` and every other rank's, in
        ring order; the hop of the next block runs while the caller works on the one yielded."""
        for hop in range(self.degree):
            pending = self.start(block) if hop < self.degree - 1 else None
            yield (self.index - hop) % self.degree, block
            if pending is not None:
                block = self.finish(pending)


class RingAttention:
    """The Ring core: exact attention of this rank's queries over every rank's image K/V blocks
    (passed around the ring, merged by online softmax), plus the replicated text's K/V joined
    on every rank. The text queries' partials are merged in source order, not arrival order,
    so every rank computes the same text output bit for bit.

    ``kv`` (PipeFusion × Ring): a :class:`RingKV` buffer, whose ``outgoing`` block is this
    rank's share of the whole image (stale where not yet refreshed) and which keeps the blocks
    of a full pass as they pass by."""

    def __init__(self, exchange: RingExchange, kv: "RingKV | None" = None) -> None:
        self.x, self.kv = exchange, kv

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text: TextQKV | None,
               text_first: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = q.shape[2]
        acc = accumulation_dtype(q.dtype)
        qa = (q if text is None else torch.cat([q, text[0]], 2)).to(acc)
        out = lse = None
        text_parts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if text is not None:
            o, l = partial_attention(qa, text[1].to(acc), text[2].to(acc))
            out, lse = o[:, :, :n], l[:, :, :n]
            text_parts[-1] = o[:, :, n:], l[:, :, n:]
        block = torch.stack([k, v]) if self.kv is None else self.kv.outgoing(k, v)
        for source, got in self.x.hops(block):
            if self.kv is not None:
                self.kv.passing(source, got)
            o, l = partial_attention(qa, got[0].to(acc), got[1].to(acc))
            out, lse = merge(out, lse, o[:, :, :n], l[:, :, :n])
            if text is not None:
                text_parts[source] = o[:, :, n:], l[:, :, n:]
        assert out is not None
        if text is None:
            return out.to(q.dtype), None
        t_out = t_lse = None
        for source in sorted(text_parts):
            t_out, t_lse = merge(t_out, t_lse, *text_parts[source])
        assert t_out is not None
        return out.to(q.dtype), t_out.to(q.dtype)


class RingKV:
    """PipeFusion × Ring's stale K/V of one layer on one rank: the whole image's K/V (all heads).

    A rank owns the same token slots on every pass, its ``share``: on a full pass its band of
    the image; on a patch pass its sub-band of each patch, so the owned slots of all ranks
    cover the image once. A full pass stores every block passing by (the whole image, fresh);
    a patch pass writes the rank's fresh sub-band of the patch, and sends round its owned slots
    of every patch (fresh for this and earlier patches, one step old for later ones), as
    xDiT's per-stage K/V cache does. With no patch pass (W = T) this is plain Ring.
    """

    def __init__(self, state: KVState, place: "RingPlace", behind: Behind = Behind()) -> None:
        self.state, self.place = state, place
        self.behind = behind
        """The exchange in front (USP: Ulysses'): the pass's keys are its ranks' sub-bands
        together, so a patch pass writes the group's slice."""
        self.kv: torch.Tensor | None = None  # (2, B, h, image tokens, d)

    def outgoing(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        fresh = torch.stack([k, v])
        if self.state.patch is None:
            return fresh
        if self.kv is None or self.kv.shape[1] != k.shape[0]:
            raise RuntimeError("Ring K/V buffer is empty: a patch pass needs a full (warm-up) pass first")
        s0, s1 = self.behind.widen(*self.state.patch)
        self.kv[:, :, :, s0:s1] = fresh
        return self.kv[:, :, :, self.place.owned].contiguous()

    def passing(self, source: int, block: torch.Tensor) -> None:
        if self.state.patch is not None:
            return
        if self.kv is None or self.kv.shape[1] != block.shape[1]:
            shape = list(block.shape)
            shape[3] = self.place.image_tokens
            self.kv = block.new_empty(shape)
        t0, t1 = self.place.full_band(source)
        self.kv[:, :, :, t0:t1] = block


class RingPlace:
    """Which image tokens a ring rank owns (see :class:`RingKV`): its band of the full image,
    and its sub-band of each patch (``patch_tokens``: each patch's [start, stop) token slice)."""

    def __init__(self, image_tokens: int, degree: int, index: int,
                 patch_tokens: list[tuple[int, int]]) -> None:
        self.image_tokens, self.degree, self.index = image_tokens, degree, index
        owned: list[int] = []
        for a, b in patch_tokens:
            size = (b - a) // degree
            owned += range(a + index * size, a + (index + 1) * size)
        self.owned = torch.tensor(owned, dtype=torch.long)

    def full_band(self, source: int) -> tuple[int, int]:
        size = self.image_tokens // self.degree
        return source * size, (source + 1) * size


@dataclass(frozen=True)
class RingMember:
    """Ring as a member of a rank's :class:`~runtime.attention.sequence_group.SequenceGroup`:
    always the innermost core (its hops carry whole K/V blocks, nothing wraps inside it)."""

    exchange: RingExchange

    @property
    def degree(self) -> int:
        return self.exchange.degree

    @property
    def index(self) -> int:
        return self.exchange.index

    def core(self, inner: SequenceAttention | None, state: KVState, stale: StaleLayout | None,
             behind: Behind) -> SequenceAttention:
        if inner is not None:
            raise NotImplementedError("Ring is the innermost sequence-parallel core (outermost mesh axis)")
        if stale is None:
            return RingAttention(self.exchange)
        place = RingPlace(stale.image_tokens, self.degree, self.index, stale.patch_tokens)
        return RingAttention(self.exchange, RingKV(state, place, behind))
