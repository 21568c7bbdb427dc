"""A rank's sequence-parallel axes (Ulysses, Ring, or both: USP) as one attention hook for a loop.

The band loop (Ulysses, Ring, USP) and the PipeFusion stage loop both split token rows across
the ranks of the plan's sequence-parallel axes and need the same four things from them, which
:class:`SequenceGroup` gives, so neither loop names Ulysses or Ring:

* where this rank sits: :attr:`degree` (``u · r``) and :attr:`index` (``ring · u + ulysses``:
  the mesh's row-major order, ring outside Ulysses, so a Ulysses group's bands are adjacent
  and, gathered, form its ring member's band) and :meth:`rows`, its sub-band of a row range;
* the attention: :meth:`install` gives every self/joint attention layer a processor of
  :mod:`runtime.attention.sequence` with this group's core (Ulysses around Local, Ring, or
  Ulysses around Ring), each layer with its own stale K/V buffer when the loop has patches;
* the prediction: :meth:`gather` joins the bands' predictions in row order (the Ulysses group
  first, then the ring);
* the trace: :meth:`record` turns a pass into compute spans between its transfers.

Stale buffers (PipeFusion × Ulysses / × Ring, as xDiT keeps them per stage): Ulysses buffers
after its first all-to-all, so a rank keeps the whole image for its ``h/u`` heads and a patch
writes the group's whole patch; Ring keeps :class:`~runtime.attention.ring.RingKV`. PipeFusion
× USP would need both at once; it is refused (simulator/strategies/pipefusion.py).
"""

from __future__ import annotations

from typing import Any

import torch

from runtime.attention.kv_state import KVState
from runtime.attention.ring import RingAttention, RingExchange, RingKV, RingPlace
from runtime.attention.sequence import LocalAttention, SequenceAttention, install_sequence
from runtime.attention.stale_kv import KVBuffer
from runtime.attention.ulysses import UlyssesAttention, UlyssesExchange
from runtime.dist_context import DistContext
from runtime.measure import record_pass

SEQUENCE_AXES = ("ring", "ulysses")
"""The sequence-parallel axes, outermost first (as :data:`simulator.rank_groups.AXES` orders them)."""


def sub_band(r0: int, r1: int, degree: int, index: int) -> tuple[int, int]:
    """Rows of part ``index`` of ``degree`` equal parts of rows [r0, r1)."""
    if (r1 - r0) % degree:
        raise ValueError(f"{r1 - r0} token rows do not split into {degree} equal sequence-parallel bands")
    size = (r1 - r0) // degree
    return r0 + index * size, r0 + (index + 1) * size


class GroupKVBuffer(KVBuffer):
    """A stale buffer behind Ulysses' all-to-all: the pass's keys are the whole Ulysses group's
    tokens (the rank's sub-band and its peers'), so a patch pass writes the group's slice."""

    def __init__(self, state: KVState, degree: int, index: int) -> None:
        super().__init__(state, seq_dim=2)
        self.degree, self.index = degree, index

    def slot(self) -> tuple[int, int]:
        s0, s1 = super().slot()
        n = s1 - s0
        return s0 - self.index * n, s0 + (self.degree - self.index) * n


class SequenceGroup:
    """This rank's Ulysses and Ring exchanges (either may be absent) as one attention hook."""

    def __init__(self, dist: DistContext) -> None:
        cuda = dist.device.type == "cuda"
        coord, degrees = dist.coord, dist.degrees
        self.dist = dist
        self.u, self.r = degrees.get("ulysses", 1), degrees.get("ring", 1)
        self.ui, self.ri = coord.get("ulysses", 0), coord.get("ring", 0)
        self.ulysses = (UlyssesExchange(dist, dist.group("ulysses"), self.u, dist.group_ranks("ulysses"), cuda=cuda)
                        if self.u > 1 else None)
        self.ring = (RingExchange(dist, dist.group("ring"), self.r, dist.group_ranks("ring"), self.ri, cuda=cuda)
                     if self.r > 1 else None)
        self.degree, self.index = self.u * self.r, self.ri * self.u + self.ui

    @property
    def exchanges(self) -> list[Any]:
        return [x for x in (self.ring, self.ulysses) if x is not None]

    @property
    def title(self) -> str:
        return " × ".join(x.title for x in self.exchanges) or "serial"

    def rows(self, r0: int, r1: int) -> tuple[int, int]:
        """This rank's sub-band of rows [r0, r1)."""
        return sub_band(r0, r1, self.degree, self.index)

    def core(self, state: KVState, ring_place: RingPlace | None = None, stale: bool = False) -> SequenceAttention:
        """One layer's core; ``stale``: with its own PipeFusion buffer."""
        if self.ulysses is not None and self.ring is not None and stale:
            raise NotImplementedError("PipeFusion × USP (Ulysses and Ring in one stage) is not executed")
        inner: SequenceAttention
        if self.ring is not None:
            kv = RingKV(state, ring_place) if stale and ring_place is not None else None
            inner = RingAttention(self.ring, kv)
        else:
            inner = LocalAttention(GroupKVBuffer(state, self.u, self.ui) if stale else None)
        return UlyssesAttention(self.ulysses, self.ui, inner) if self.ulysses is not None else inner

    def install(self, family: str, blocks: list[Any], state: KVState, *, image_tokens: int = 0,
                patch_tokens: list[tuple[int, int]] | None = None) -> int:
        """Sequence-parallel processors on ``blocks``; with ``patch_tokens`` (PipeFusion's patches,
        as image-token slices), each layer keeps a stale buffer."""
        stale = patch_tokens is not None
        place = RingPlace(image_tokens, self.r, self.ri, patch_tokens) if stale and self.ring is not None else None
        return install_sequence(family, blocks, lambda: self.core(state, place, stale), state)

    def gather(self, mine: torch.Tensor, dim: int = 2) -> torch.Tensor:
        """Every band's ``mine`` joined along ``dim`` in row order (Ulysses group first, then the ring)."""
        for x in (self.ulysses, self.ring):
            if x is not None:
                mine = self.dist.all_gather_cat(mine, x.group, x.degree, dim,
                                                f"{x.title} gather of the prediction with {x.peers}")
        return mine

    def begin_step(self, step: int, share: Any) -> bool:
        """Nothing to set per step (attention is exact); warm-up steps are tagged as such."""
        return step < share.warmup

    def clear(self) -> None:
        for x in self.exchanges:
            x.intervals.clear()

    def record(self, rec: Any, start: float, end: float, **args: object) -> None:
        """The pass [start, end) as compute spans between this group's transfers (named per exchange)."""
        spans = sorted((a, b, n, None, x.span) for x in self.exchanges for a, b, n in x.intervals)
        record_pass(rec, start, end, spans, self.exchanges[0].span if self.exchanges else "", **args)
