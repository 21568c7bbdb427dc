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
docs/runtime.md, "Ring".

Only the ``self`` attention kind has a Ring processor; joint attention (SD3, Flux) is refused
by the simulator strategy's ``runtime_limits``.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Mapping

import torch

from runtime.dist_context import DistContext, PeerFailure
from runtime.families import adapter_for, registry
from runtime.attention.stale_kv import image_qkv, self_attention_output


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

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Exact attention of this rank's queries over every rank's keys (B, h, n, d), the blocks
        passed around the ring; the hop of block ``j + 1`` runs while block ``j`` is attended."""
        block = torch.stack([k, v])
        acc = accumulation_dtype(q.dtype)
        qa = q.to(acc)
        out = lse = None
        for hop in range(self.degree):
            pending = self.start(block) if hop < self.degree - 1 else None
            out, lse = merge(out, lse, *partial_attention(qa, block[0].to(acc), block[1].to(acc)))
            if pending is not None:
                block = self.finish(pending)
        assert out is not None
        return out.to(q.dtype)


class RingSelfAttnProcessor:
    """Image self-attention (the ``self`` kind: PixArt, DiT, HunyuanDiT) over the ring's blocks."""

    def __init__(self, exchange: RingExchange) -> None:
        self.x = exchange

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, temb: Any = None, image_rotary_emb: Any = None,
                 **_: Any) -> torch.Tensor:
        if attention_mask is not None:
            raise NotImplementedError("the Ring processor runs unmasked self-attention only")
        q, k, v = image_qkv(attn, hidden_states)  # (B, h, n, d) of this rank's tokens
        if image_rotary_emb is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            q, k = apply_rotary_emb(q, image_rotary_emb), apply_rotary_emb(k, image_rotary_emb)
        out = self.x.attend(q, k, v)
        b, h, n, d = out.shape
        merged = out.transpose(1, 2).reshape(b, n, h * d).to(q.dtype)
        return self_attention_output(attn, merged, hidden_states)


RING_PROCESSORS: Mapping[str, type] = MappingProxyType({"self": RingSelfAttnProcessor})
"""The Ring processor of each attention kind (:data:`runtime.families.ProcessorKind`)."""


def ring_families() -> list[str]:
    """Families whose every attention kind has a Ring processor."""
    return [name for name, adapter in registry().items() if adapter.processor_kinds <= RING_PROCESSORS.keys()]


def install_ring(family: str, blocks: list[Any], exchange: RingExchange) -> int:
    """Swap each block's self-attention processor for the Ring one; returns how many."""
    adapter = adapter_for(family)
    missing = sorted(adapter.processor_kinds - RING_PROCESSORS.keys())
    if missing:
        raise NotImplementedError(f"no Ring processor for family {family!r} ({', '.join(missing)} attention); "
                                  f"families: {', '.join(ring_families())}")
    for block in blocks:
        for kind, attn in adapter.attention_sites(block):
            attn.set_processor(RING_PROCESSORS[kind](exchange))
    return len(blocks)
