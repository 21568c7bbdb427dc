"""Ring attention sequence parallelism for one rank (with CFG and data parallel outside it; with Ulysses: USP).

Each of the ``r`` ranks of a ring group holds an equal band of token rows through every
block, exactly as in Ulysses: the same band loop (:mod:`runtime.band_loop`) and the
same sequence-parallel group (:class:`~runtime.attention.sequence_group.SequenceGroup`);
only the attention core differs: the K/V blocks travel around the ring and partial
softmaxes merge (:mod:`runtime.attention.ring`). So this strategy is Ulysses' one with
another axis name.

Attention is exact, so the result equals the serial one up to floating-point order.

The trace: ``embed``, ``compute`` between the waits for K/V hops, ``collective`` spans named
``ring_pass`` for each wait (bytes: the block sent), the band gather, ``final`` and
``scheduler``. A hop overlaps the partial attention of the block before it; what the trace
shows as collective is the part that did not hide.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.attention.ring import RingExchange, RingMember
from runtime.attention.sequence_group import SequenceMember
from runtime.dist_context import DistContext
from runtime.strategies.ulysses import SequenceAxis


@dataclass(frozen=True)
class Ring(SequenceAxis):
    axis: str = "ring"

    def member(self, dist: DistContext) -> SequenceMember:
        ranks = dist.group_ranks(self.axis)
        return RingMember(RingExchange(dist, dist.group(self.axis), len(ranks), ranks, dist.coord[self.axis],
                                       cuda=dist.device.type == "cuda"))


STRATEGY = Ring()
