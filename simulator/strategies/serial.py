"""Serial: one rank runs every layer of its stage on the whole item; nothing to share or exchange.

It is also what every stage group degenerates to when no intra-stage degree is above 1,
so a plan with no parallelism at all is one stage, one rank, one item per step.
"""

from __future__ import annotations

from simulator.strategies.base import StageStrategy


class Serial(StageStrategy):
    name = "serial"
    axis = ""
