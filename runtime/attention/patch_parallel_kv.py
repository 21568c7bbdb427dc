"""Patch-parallel stale K/V: every rank's band attends over the whole image, its own slice fresh.

Asynchronous patch parallelism (Li et al. 2024) splits the image's token rows into one
band per rank. Each rank runs *every* block on its band; at each self- (or joint-)
attention layer its queries need the keys and values of the whole image. The rank's own
band is computed fresh; the other bands are read from a full-sequence buffer that holds
what the other ranks computed at the previous step. Right after the attention the rank
starts an asynchronous all-gather of its fresh slice; the result is needed only by the
same layer at the next step, so the transfer hides behind the rest of this step. The
processor waits for it (with the run's timeout) just before it overwrites the buffer.

On a *synchronous* step (the warm-up steps, and always the first step: there is no
earlier step to stand in) the fresh slices of all ranks are gathered before the
attention, so the layer attends over a wholly fresh sequence: exactly the serial
attention, up to floating-point order.

The processors reuse PipeFusion's stale-K/V processors (:mod:`runtime.attention.stale_kv`),
which call ``self.kv.update(k, v)`` with the image tokens' K/V; only the buffer differs
(:class:`BandKV` instead of :class:`~runtime.attention.stale_kv.KVBuffer`). So the same
three processor kinds run: ``self`` (PixArt, DiT, HunyuanDiT: rotary applied before
buffering), ``joint`` (SD3) and ``flux``; a family's own stale processors (Wan, Qwen-Image)
get the band buffer in place of theirs (:func:`band_of`). Text tokens are never buffered: they are
replicated on every rank, cross-attention to text keeps diffusers' processor, and the
joint kinds compute the text K/V fresh and concatenate them with the image buffer.

No statistics need correcting: DistriFusion's U-Net version also all-gathers GroupNorm
statistics, but DiT blocks normalise with LayerNorm (RMSNorm) per token, which a band
computes exactly on its own.

Worked example: 2 ranks, an 8×8 token grid, rank 1 owns rows 4..8 → image tokens 32..64.
At an asynchronous step rank 1 writes its fresh K/V into tokens 32..64 of the buffer and
reads tokens 0..32 as rank 0 computed them one step earlier.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any, Mapping

import torch

from runtime.attention.kv_state import KVState
from runtime.attention.stale_kv import StaleFluxAttnProcessor, StaleJointAttnProcessor, StaleSelfAttnProcessor
from runtime.dist_context import DistContext
from runtime.families import adapter_for
from runtime.measure import record_pass


def pad_to(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``x`` zero-padded along ``dim`` to ``size`` (contiguous)."""
    short = size - x.shape[dim]
    if short <= 0:
        return x.contiguous()
    pad = list(x.shape)
    pad[dim] = short
    return torch.cat([x, x.new_zeros(pad)], dim).contiguous()


def unpad(x: torch.Tensor, dim: int, size: int, sizes: list[int]) -> torch.Tensor:
    """The concatenation of ``len(sizes)`` padded parts of ``size`` along ``dim``, each cut to its own."""
    if all(n == size for n in sizes):
        return x
    return torch.cat([x.narrow(dim, i * size, n) for i, n in enumerate(sizes)], dim)


class BandExchange:
    """The K/V all-gathers of one rank's patch-parallel group, and the loop's per-step settings.

    The loop sets :attr:`band`, :attr:`sync` and :attr:`last` before each step; the
    buffers call :meth:`gather_kv`, :meth:`start` and :meth:`wait`, which time themselves
    into :attr:`intervals` so the loop can write ``collective`` spans.
    """

    span = "all_gather kv"
    """The trace's name for one K/V gather (:func:`runtime.measure.record_pass`)."""

    def __init__(self, dist: DistContext, group: Any, degree: int, ranks: list[int], cuda: bool = False,
                 index: int = 0) -> None:
        self.dist, self.group, self.degree, self.ranks, self.cuda = dist, group, degree, ranks, cuda
        self.index = index
        """This rank's band, in row order."""
        self.peers = ", ".join(f"rank {r}" for r in ranks if r != dist.rank)
        self.band: tuple[int, int] = (0, 0)
        """Image-token slice [start, stop) of this rank's band."""
        self.sync = True
        """Gather every rank's fresh K/V before attending (warm-up steps, the first step)."""
        self.last = False
        """The last step: no later step reads this step's K/V, so nothing is gathered for it."""
        self.band_rows: list[int] = []
        """Token rows of every rank's band (uneven when the rows do not divide: the larger first)."""
        self.cols, self.p = 0, 1
        """Token columns of the grid, latent rows per token row."""
        self.intervals: list[tuple[float, float, int, bool]] = []
        """(start, end, bytes, overlapped) of each synchronous gather and each wait for an
        asynchronous one since the loop last took them (the wait is the exposed part)."""

    # --- the band loop's hook (runtime.band_loop.BandHook) ---

    def begin_step(self, step: int, share: Any) -> bool:
        """Synchronous for the first ``max(W, 1)`` steps (the first has no earlier K/V to stand in);
        nothing is gathered for the last step (no later step reads it)."""
        self.sync, self.last = step < max(share.warmup, 1), step == share.steps - 1
        return self.sync

    def clear(self) -> None:
        self.intervals.clear()

    def record(self, rec: Any, start: float, end: float, **args: object) -> None:
        record_pass(rec, start, end, self.intervals, self.span, **args)

    def band_tokens(self, rows: int, cols: int) -> tuple[int, int]:
        return self.band

    def gather(self, mine: torch.Tensor, dim: int = 2) -> torch.Tensor:
        if dim != 2:
            raise NotImplementedError("DistriFusion's bands are whole token rows: only predictions are gathered")
        rows = [n * self.p for n in self.band_rows] or [mine.shape[2]] * self.degree
        out = self.dist.all_gather_cat(pad_to(mine, 2, max(rows)), self.group, self.degree, 2,
                                       f"gather of the prediction bands with {self.peers}")
        return unpad(out, 2, max(rows), rows)

    def tokens(self) -> list[int]:
        """Image tokens of every rank's band."""
        return [n * self.cols for n in self.band_rows]

    def _sync_cuda(self) -> None:
        if self.cuda:
            torch.cuda.current_stream().synchronize()

    def _outputs(self, fresh: torch.Tensor) -> list[torch.Tensor]:
        return [torch.empty_like(fresh) for _ in range(self.degree)]

    def gather_kv(self, fresh: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``fresh`` now, in rank order (a synchronous step)."""
        import torch.distributed as dist

        self._sync_cuda()
        start = time.perf_counter()
        out = self._outputs(fresh)
        work = dist.all_gather(out, fresh, group=self.group, async_op=True)
        self.dist._wait(work, f"K/V all-gather with {self.peers}")  # the run's timeout, the peers named
        self._sync_cuda()
        self.intervals.append((start, time.perf_counter(), fresh.numel() * fresh.element_size(), False))
        return out

    def start(self, fresh: torch.Tensor) -> tuple[Any, list[torch.Tensor], int]:
        """Start gathering ``fresh`` for the next step; :meth:`wait` finishes it."""
        import torch.distributed as dist

        out = self._outputs(fresh)
        return dist.all_gather(out, fresh, group=self.group, async_op=True), out, fresh.numel() * fresh.element_size()

    def wait(self, pending: tuple[Any, list[torch.Tensor], int]) -> list[torch.Tensor]:
        """The gather :meth:`start` began, once done; the time spent waiting is recorded as exposed."""
        work, out, nbytes = pending
        start = time.perf_counter()
        self.dist._wait(work, f"asynchronous K/V all-gather with {self.peers}")
        self._sync_cuda()
        self.intervals.append((start, time.perf_counter(), nbytes, True))
        return out


class BandKV:
    """The whole image's K/V of one attention layer on one rank; ``seq_dim`` is the token axis.

    :meth:`update` takes the band's fresh K/V and returns the whole sequence's: all fresh
    on a synchronous step, else the band fresh and the rest one step old.
    """

    def __init__(self, exchange: BandExchange, seq_dim: int) -> None:
        self.x = exchange
        self.seq_dim = seq_dim
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.pending: tuple[Any, list[torch.Tensor], int] | None = None
        """The gather this layer started at the previous step."""

    def _store(self, parts: list[torch.Tensor]) -> None:
        sizes = self.x.tokens() or [p.shape[self.seq_dim + 1] for p in parts]
        parts = [p.narrow(self.seq_dim + 1, 0, n) for p, n in zip(parts, sizes)]  # drop the padding
        self.k, self.v = torch.cat(parts, dim=self.seq_dim + 1).unbind(0)  # parts: (2, ...) per rank

    def _settle(self) -> None:
        if self.pending is not None:
            parts, self.pending = self.x.wait(self.pending), None
            self._store(parts)

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # one gather for K and V, padded to the largest band (gloo gathers equal sizes)
        fresh = pad_to(torch.stack([k, v]), self.seq_dim + 1, max(self.x.tokens() or [k.shape[self.seq_dim]]))
        self._settle()  # the previous step's gather must land before the buffer is written
        if self.x.sync:
            self._store(self.x.gather_kv(fresh))
        else:
            if self.k is None or self.v is None or self.k.shape[0] != k.shape[0]:
                raise RuntimeError("patch-parallel K/V buffer is empty: the first step must be synchronous")
            s0, s1 = self.x.band
            self.k.narrow(self.seq_dim, s0, s1 - s0).copy_(k)
            self.v.narrow(self.seq_dim, s0, s1 - s0).copy_(v)
            if not self.x.last:
                self.pending = self.x.start(fresh)
        return self.k, self.v  # type: ignore[return-value]


class BandSelfAttnProcessor(StaleSelfAttnProcessor):
    """Image self-attention (the ``self`` kind) over the whole image's K/V."""

    def __init__(self, exchange: BandExchange, state: KVState) -> None:
        self.kv = BandKV(exchange, seq_dim=2)  # type: ignore[assignment]


class BandJointAttnProcessor(StaleJointAttnProcessor):
    """SD3 joint attention: the image part of the keys from the band buffer, the text part fresh."""

    def __init__(self, exchange: BandExchange, state: KVState) -> None:
        self.kv = BandKV(exchange, seq_dim=2)  # type: ignore[assignment]


class BandFluxAttnProcessor(StaleFluxAttnProcessor):
    """Flux attention (double and single blocks): the image part of the keys from the band buffer."""

    def __init__(self, exchange: BandExchange, state: KVState) -> None:
        self.state = state
        self.kv = BandKV(exchange, seq_dim=1)  # type: ignore[assignment]


BAND_PROCESSORS: Mapping[str, type] = MappingProxyType({
    "self": BandSelfAttnProcessor, "joint": BandJointAttnProcessor, "flux": BandFluxAttnProcessor})
"""The patch-parallel processor of each attention kind (:data:`runtime.families.ProcessorKind`)."""


def install_band_kv(family: str, blocks: list[Any], exchange: BandExchange, state: KVState) -> int:
    """Swap each block's self/joint attention processor for the patch-parallel one; returns how many blocks."""
    adapter = adapter_for(family)
    own = adapter.own_stale_processors()
    missing = sorted(adapter.processor_kinds - BAND_PROCESSORS.keys() - own.keys())
    if missing:
        raise NotImplementedError(f"no patch-parallel K/V processor for family {family!r} "
                                  f"({', '.join(missing)} attention)")
    for block in blocks:
        for kind, attn in adapter.attention_sites(block):
            attn.set_processor(BAND_PROCESSORS[kind](exchange, state) if kind in BAND_PROCESSORS
                               else band_of(own[kind](state), exchange))
    return len(blocks)


def band_of(stale: Any, exchange: BandExchange) -> Any:
    """A family's own stale-K/V processor (Wan, Qwen-Image) made patch-parallel: its
    :class:`~runtime.attention.stale_kv.KVBuffer` swapped for a :class:`BandKV` on the same token
    axis, as the shared kinds' band processors subclass theirs."""
    stale.kv = BandKV(exchange, seq_dim=stale.kv.seq_dim)
    return stale
