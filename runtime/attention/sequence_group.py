"""A rank's sequence-parallel axes (Ulysses, Ring, or both: USP) as one attention hook for a loop.

The band loop (Ulysses, Ring, USP) and the PipeFusion stage loop both split token rows across
the ranks of the plan's sequence-parallel axes and need the same four things from them, which
:class:`SequenceGroup` gives, so neither loop names an axis:

* where this rank sits: :attr:`degree` (the product of the members' degrees) and :attr:`index`
  (row-major over the members, outermost first, as the mesh orders them: under USP
  ``ring · u + ulysses``, so a Ulysses group's bands are adjacent and, gathered, form its ring
  member's band), :meth:`rows`, its sub-band of a row range, and :meth:`tokens`, its equal
  share of a token range (PipeFusion × SP: a patch is split by tokens, as xDiT splits it, so
  a 1-row patch still splits; where the rows divide, the two are the same band);
* the attention: :meth:`install` gives every self/joint attention layer a processor of
  :mod:`runtime.attention.sequence` whose core the members build, the mesh-outermost member
  innermost (USP: Ulysses' all-to-alls around Ring's hops), each layer with its own stale
  K/V buffer when the loop has patches;
* the prediction: :meth:`gather` joins the bands' predictions in row order (innermost member first);
* the trace: :meth:`record` turns a pass into compute spans between its transfers.

Each member (:class:`SequenceMember`) comes from its axis' strategy module
(``runtime/strategies/<axis>.py``), so this module names none of them.

Stale buffers (PipeFusion × Ulysses / × Ring, as xDiT keeps them per stage): Ulysses buffers
after its first all-to-all, so a rank keeps the whole image for its ``h/u`` heads and a patch
writes the group's whole patch; Ring keeps its ``RingKV`` (the image
for the ring member's share of the tokens); PipeFusion × USP keeps Ring's behind Ulysses'
all-to-all (``h/u`` heads, the Ulysses group's tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from runtime.attention.kv_state import KVState
from runtime.attention.sequence import SequenceAttention, install_sequence
from runtime.attention.stale_kv import KVBuffer
from runtime.dist_context import DistContext
from runtime.measure import record_pass


def sub_band(r0: int, r1: int, degree: int, index: int, unit: str = "token rows") -> tuple[int, int]:
    """Part ``index`` of ``degree`` equal parts of [r0, r1) (rows, or tokens: ``unit`` names them)."""
    if (r1 - r0) % degree:
        raise ValueError(f"{r1 - r0} {unit} do not split into {degree} equal sequence-parallel bands")
    size = (r1 - r0) // degree
    return r0 + index * size, r0 + (index + 1) * size


@dataclass(frozen=True)
class StaleLayout:
    """What a stale buffer needs to know of the image: its tokens and PipeFusion's patches."""

    image_tokens: int
    patch_tokens: list[tuple[int, int]]
    """Each patch's [start, stop) image-token slice."""


@dataclass(frozen=True)
class Behind:
    """The members in front of a core (mesh-inner, whose exchanges wrap it): the pass's keys it
    sees are their ranks' sub-bands together, rank ``index`` of ``degree``."""

    degree: int = 1
    index: int = 0

    def widen(self, s0: int, s1: int) -> tuple[int, int]:
        """The group's token slice around this rank's [s0, s1)."""
        n = s1 - s0
        return s0 - self.index * n, s0 + (self.degree - self.index) * n


class GroupKVBuffer(KVBuffer):
    """A stale buffer behind an exchange that joins the group's tokens (Ulysses' all-to-all):
    a patch pass writes the group's slice of the patch, not only this rank's."""

    def __init__(self, state: KVState, behind: Behind) -> None:
        super().__init__(state, seq_dim=2)
        self.behind = behind

    def slot(self) -> tuple[int, int]:
        return self.behind.widen(*super().slot())


class SequenceMember(Protocol):
    """One sequence-parallel axis of a rank: its exchange and how it builds a layer's core."""

    degree: int
    index: int
    exchange: Any
    """Has ``title``, ``span``, ``peers``, ``group``, ``degree`` and timed ``intervals``."""

    def core(self, inner: SequenceAttention | None, state: KVState, stale: StaleLayout | None,
             behind: Behind) -> SequenceAttention:
        """This axis' core around ``inner`` (None: it is innermost); ``stale``: with a buffer."""
        ...


class SequenceGroup:
    """This rank's sequence-parallel members (mesh order, outermost first) as one attention hook."""

    def __init__(self, dist: DistContext, members: list[SequenceMember]) -> None:
        self.dist, self.members = dist, members
        self.degree, self.index = 1, 0
        for m in members:
            self.degree, self.index = self.degree * m.degree, self.index * m.degree + m.index

    @property
    def exchanges(self) -> list[Any]:
        return [m.exchange for m in self.members]

    def rows(self, r0: int, r1: int) -> tuple[int, int]:
        """This rank's sub-band of rows [r0, r1)."""
        return sub_band(r0, r1, self.degree, self.index)

    def band_tokens(self, rows: int, cols: int) -> tuple[int, int]:
        """This rank's equal share of the image's tokens (the band loop's band)."""
        return self.tokens(0, rows * cols)

    def tokens(self, s0: int, s1: int) -> tuple[int, int]:
        """This rank's equal share of image tokens [s0, s1)."""
        return sub_band(s0, s1, self.degree, self.index, "tokens")

    def core(self, state: KVState, stale: StaleLayout | None = None) -> SequenceAttention:
        """One layer's core (``stale``: with its own PipeFusion buffer), the outermost member innermost."""
        core: SequenceAttention | None = None
        for i, m in enumerate(self.members):
            behind = Behind()
            for inner in self.members[i + 1:]:
                behind = Behind(behind.degree * inner.degree, behind.index * inner.degree + inner.index)
            core = m.core(core, state, stale, behind)
        assert core is not None, "a sequence group has at least one member"
        return core

    def install(self, family: str, blocks: list[Any], state: KVState, stale: StaleLayout | None = None) -> int:
        """Sequence-parallel processors on ``blocks``; with ``stale``, each layer keeps a stale buffer."""
        return install_sequence(family, blocks, lambda: self.core(state, stale), state)

    def begin_step(self, step: int, share: Any) -> bool:
        """Nothing to set per step (attention is exact); warm-up steps are tagged as such."""
        return step < share.warmup

    def gather(self, mine: torch.Tensor, dim: int = 2) -> torch.Tensor:
        """Every band's ``mine`` joined along ``dim`` in row order (innermost member's group first)."""
        for m in reversed(self.members):
            x = m.exchange
            mine = self.dist.all_gather_cat(mine, x.group, x.degree, dim,
                                            f"{x.title} gather of the prediction with {x.peers}")
        return mine

    def clear(self) -> None:
        for x in self.exchanges:
            x.intervals.clear()

    def record(self, rec: Any, start: float, end: float, **args: object) -> None:
        """The pass [start, end) as compute spans between this group's transfers (named per exchange)."""
        spans = sorted((a, b, n, None, x.span) for x in self.exchanges for a, b, n in x.intervals)
        record_pass(rec, start, end, spans, self.exchanges[0].span, **args)
