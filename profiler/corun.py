"""How much slower a forward runs when several ranks of one host compute at once.

Ranks placed on one machine share its caches, its memory bandwidth and, on a VM, the host's
scheduling of its virtual cores; on this 2-core VM two pfrun ranks that each run the same
serial work (``data=2``) took 26 % longer than one (docs/fidelity.md). The per-layer table
is timed on one process with the others idle, so it cannot see this. Here ``ranks``
processes (the links profiler's launcher: fork, gloo, one thread each) each build the whole
model; in each round every rank in turn times a warm forward while the others wait at a
barrier, then all time one at once (a barrier before every forward, so they start together; each forward
counts as its slowest rank's time, since a plan's ranks meet at their collectives). The
factor, the median over rounds of together ÷ alone (paired, so load from other jobs that
comes and goes moves both sides alike), is what the simulator multiplies compute by when that
many of a plan's ranks share a host.
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from typing import Any

from profiles.catalog.models import ModelPreset
from profiles.costs.profile_format import CoRunTiming


def _measure(rank: int, world: int, device: Any, *, preset_json: str, resolution_px: int, batch: int, repeats: int,
             seed: int) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    from profiler.runtime_costs import FullForward

    preset = ModelPreset.model_validate_json(preset_json)
    full = FullForward(preset, resolution_px=resolution_px, batch=batch, device=str(device), dtype=torch.float32,
                       seed=seed, sync=lambda: None)
    inputs = full.inputs(batch)

    def timed() -> float:
        start = time.perf_counter()
        full.call(inputs)
        return time.perf_counter() - start

    alone: list[float] = []
    together: list[float] = []
    with torch.inference_mode():
        for _ in range(3):
            full.call(inputs)
        for _ in range(repeats):  # one round: each rank alone in turn, then all at once
            for turn in range(world):
                dist.barrier()
                if rank == turn:
                    alone.append(timed())
            dist.barrier()
            together.append(timed())
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, {"alone": alone, "together": together})
    # together: per forward, the last rank's time (the ranks start at a barrier; a plan's ranks
    # meet at its collectives, so the slower one sets the pace); alone: the ranks' mean per round
    rounds_alone = [statistics.fmean(ts) for ts in zip(*(g["alone"] for g in gathered))]
    rounds_together = [max(ts) for ts in zip(*(g["together"] for g in gathered))]
    return {"alone": rounds_alone, "together": rounds_together,
            "ratios": [t / a for a, t in zip(rounds_alone, rounds_together)]}


def time_corun(preset: ModelPreset, *, ranks: int, resolution_px: int, batch: int, repeats: int, seed: int,
               timeout_s: float = 300.0) -> CoRunTiming:
    """Whole warm forwards of ``preset`` on ``ranks`` CPU processes, one at a time and all at once."""
    from profiler.rank_launch import run_ranks

    raw = run_ranks(partial(_measure, preset_json=preset.model_dump_json(), resolution_px=resolution_px, batch=batch,
                            repeats=repeats, seed=seed),
                    nprocs=ranks, device_kind="cpu", timeout_s=timeout_s, prefix="pfplan-corun-")
    alone, together = statistics.median(raw["alone"]), statistics.median(raw["together"])
    return CoRunTiming(ranks=ranks, batch=batch, query_tokens=preset.image_tokens(resolution_px), alone_s=alone,
                       together_s=together, slowdown=statistics.median(raw["ratios"]), repeats=repeats)
