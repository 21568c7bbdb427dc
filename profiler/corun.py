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
from typing import Any, Callable

from profiles.catalog.models import ModelPreset
from profiles.costs.profile_format import CoRunTiming


def _workload(preset: ModelPreset, workload: str, *, resolution_px: int, batch: int, device: Any,
              seed: int) -> Callable[[], Any]:
    """One call of ``workload``: the whole warm forward, or the runtime's VAE decode of one latent to PNG."""
    import torch

    if workload == "vae_decode":
        from runtime.model_loading import load_vae
        from runtime.worker import decode_png

        vae = load_vae(preset, model_path=None, seed=seed, device=str(device), dtype=torch.float32)
        channels = int(preset.vae_config.get("latent_channels", preset.arch.latent_channels))
        rows, cols = preset.latent_size(resolution_px, resolution_px)
        latent = torch.randn(1, channels, rows, cols, dtype=torch.float32)
        return lambda: decode_png(vae, latent)
    from profiler.runtime_costs import FullForward

    full = FullForward(preset, resolution_px=resolution_px, batch=batch, device=str(device), dtype=torch.float32,
                       seed=seed, sync=lambda: None)
    inputs = full.inputs(batch)
    return lambda: full.call(inputs)


def _measure(rank: int, world: int, device: Any, *, preset_json: str, resolution_px: int, batch: int, repeats: int,
             seed: int, workload: str = "forward") -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    preset = ModelPreset.model_validate_json(preset_json)
    call = _workload(preset, workload, resolution_px=resolution_px, batch=batch, device=device, seed=seed)

    def timed() -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    alone: list[float] = []
    together: list[float] = []
    with torch.inference_mode():
        for _ in range(3):
            call()
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
               timeout_s: float = 300.0, workload: str = "forward") -> CoRunTiming:
    """Warm calls of ``workload`` (the whole forward, or the VAE decode: data-parallel replicas decode at
    once) of ``preset`` on ``ranks`` CPU processes, one at a time and all at once."""
    from profiler.rank_launch import run_ranks

    raw = run_ranks(partial(_measure, preset_json=preset.model_dump_json(), resolution_px=resolution_px, batch=batch,
                            repeats=repeats, seed=seed, workload=workload),
                    nprocs=ranks, device_kind="cpu", timeout_s=timeout_s, prefix="pfplan-corun-")
    alone, together = statistics.median(raw["alone"]), statistics.median(raw["together"])
    return CoRunTiming(ranks=ranks, workload=workload, batch=batch, query_tokens=preset.image_tokens(resolution_px), alone_s=alone,
                       together_s=together, slowdown=statistics.median(raw["ratios"]), repeats=repeats)
