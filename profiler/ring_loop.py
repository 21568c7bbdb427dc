"""Ring's attention core timed inside a loop of ``degree`` ranks, as pfrun runs it.

:mod:`profiler.ring_core` times ``partial_attention`` and ``merge`` on one rank with nothing else
running. Inside a Ring plan each call also posts a K/V hop (``batch_isend_irecv``) and runs while
that hop is in flight: on gloo the transfer is carried by the backend's own threads, which on a
box with a core per rank take cycles from the compute, and posting the pair costs a fixed time
per call. On this 2-core VM (2026-12-06) one call of pixart-tiny's layer (batch 2, 128 queries
over 2 blocks of 128 keys) took 0.75 ms on average outside its hop waits in the loop against
0.33 ms for its two partials and one merge alone (the shipped profile, 21:41 UTC); with the
one-rank figure Ring's forward spans were priced at 111 ms where the runs measured 180 ms
(docs/fidelity.md, round 13).

Here ``degree`` processes (the links profiler's launcher: fork, gloo, one thread each) run the
runtime's own ``RingAttention`` with a real ``RingExchange`` (``runtime/attention/ring.py``),
an MLP-shaped pair of matmuls of the layer's widths between calls (the calls follow compute, as
in the runtime). Per call, the time outside the hop waits the exchange records is the core's
cost; the waits are the hop's, which the simulator prices on the network. The figure is per call at the measured shape; other shapes
scale it by the attention's FLOPs from there (:meth:`~profiles.costs.profiled.ProfiledCostModel.ring_attention_excess_s`),
which over-prices the per-call part at larger shapes: a known limit. The ranks are forked from the
profiler's process, warm from its timings; each also runs five untimed calls first, so only the
steady per-call cost is read.
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from typing import Any

from profiles.catalog.models import ModelPreset


def _measure(rank: int, world: int, device: Any, *, heads: int, head_dim: int, tokens: int, hidden: int,
             ffn_inner: int, batch: int, calls: int, seed: int) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    from runtime.attention import ring as runtime_ring  # imported as profiler/ring_core.py does
    from runtime.dist_context import DistContext

    # the exchange reads only the rank and the timeout of its context
    ctx = DistContext(rank=rank, world_size=world, degrees={}, timeout_s=60.0, device=device)
    exchange = runtime_ring.RingExchange(ctx, None, world, list(range(world)), rank)
    core = runtime_ring.RingAttention(exchange)
    gen = torch.Generator().manual_seed(seed + rank)
    share = tokens // world
    q, k, v = (torch.randn(batch, heads, share, head_dim, generator=gen) for _ in range(3))
    x = torch.randn(batch * share, hidden, generator=gen)
    up, down = torch.randn(hidden, ffn_inner, generator=gen), torch.randn(ffn_inner, hidden, generator=gen)
    costs: list[float] = []
    with torch.inference_mode():
        for i in range(calls + 5):  # the first five warm the hop's buffers and the kernels
            x = torch.tanh(x @ up) @ down  # the layer's compute before its attention
            exchange.intervals.clear()
            start = time.perf_counter()
            core.attend(q, k, v, None, False)
            spent = time.perf_counter() - start
            if i >= 5:
                costs.append(spent - sum(end - begin for begin, end, _ in exchange.intervals))
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, statistics.fmean(costs))
    return {"per_rank": gathered}


def time_ring_in_loop(preset: ModelPreset, *, degree: int, resolution_px: int, batch: int, calls: int, seed: int,
                      timeout_s: float = 300.0) -> float:
    """Seconds of one Ring attention call outside its hop waits, on ``degree`` CPU ranks side by side:
    each rank's mean over ``calls`` (a run's time is the sum of its calls, and the tail of slow ones,
    the backend's threads holding the core, is part of it: means ran 0.61-0.71 ms against medians of
    0.47-0.52 ms in four runs of 350 calls, 2026-12-06), the slowest rank's (the ranks meet at every hop)."""
    from profiler.rank_launch import run_ranks

    arch = preset.arch
    raw = run_ranks(partial(_measure, heads=arch.heads, head_dim=arch.head_dim,
                            tokens=preset.image_tokens(resolution_px), hidden=arch.hidden_size,
                            ffn_inner=arch.ffn_inner, batch=batch, calls=calls, seed=seed),
                    nprocs=degree, device_kind="cpu", timeout_s=timeout_s, prefix="pfplan-ring-loop-")
    return max(raw["per_rank"])
