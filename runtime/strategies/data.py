"""Data parallel: every replica makes its own image, with its own seed and prompt; no traffic.

Replica ``i`` (its ``data`` coordinate) seeds its image with ``seed + i`` and takes entry
``i mod n`` of the per-replica options (prompts, ``--prompt-embeds`` files), so two
replicas of one prompt still make two different images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from simulator.plan import ParallelPlan


@dataclass(frozen=True)
class DataParallel:
    axis: str = "data"

    def active(self, plan: ParallelPlan) -> bool:
        return plan.degrees.data > 1

    def replica(self, coord: Mapping[str, int]) -> int:
        return coord[self.axis]

    def seed(self, base_seed: int, replica: int) -> int:
        return base_seed + replica

    def pick(self, options: tuple[str, ...], replica: int) -> str | None:
        return options[replica % len(options)] if options else None


STRATEGY = DataParallel()
