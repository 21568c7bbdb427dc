"""Serial: one rank runs every layer of its stage on the whole item; nothing to share or exchange.

It is also what every stage group degenerates to when no intra-stage degree is above 1,
so a plan with no parallelism at all is one stage, one rank, one item per step.
"""

from __future__ import annotations

from profiles.catalog.models import ModelPreset
from simulator.strategies.base import SharesNothing


class Serial(SharesNothing):
    """No axis, so no ``Degrees`` field: it is registered for its runtime module, which runs a
    stage group of one rank, and so that every plan, even one with no degree above 1, names the
    strategy that executes it."""

    name = "serial"
    axis = None
    title = "Serial"
    role = "stage"
    runtime_module = "runtime.strategies.serial"

    def rules(self, degree: int, model: ModelPreset, rows: int) -> list[str]:
        return []
