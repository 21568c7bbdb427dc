"""``pfplan profile overlap``: how much of an asynchronous collective hides behind compute on this box.

The simulator lets an overlapped transfer of ``m`` seconds beside ``c`` seconds of compute
take ``max(c, e·m) + (1 − e)·m`` (docs/simulator.md, "Communication efficiency"); this
measures ``e`` directly instead of fitting it to whole-plan runs. Every rank, in lockstep:

1. a compute loop alone: square matmuls, the kernels a DiT block spends its time in;
2. an all-gather alone, sized so it takes about half as long as the loop (``m ≤ c``, so
   the formula above applies: ``both = c + (1 − e)·m``);
3. both at once: the all-gather started asynchronously (NCCL's own stream on CUDA, gloo's
   worker thread on CPU), the loop run, then the all-gather waited for.

Each repeat keeps the slowest rank's times (the one that sets the pace);
``e = (c + m − both) / m`` from the medians, clipped to [0, 1]. The loop length and the
message size are set from quick probes, so on a busy machine ``m`` can exceed ``c``; the
formula still holds while ``e·m ≤ c``, and when ``both ≈ m > c`` the result is only a
lower bound (said in the result).
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any

from profiles.errors import InputError
from profiler.rank_launch import run_ranks, sync, under_torchrun
from profiles.topology.format import Communication, Topology


@dataclass(frozen=True)
class OverlapSettings:
    nprocs: int = 2
    device: str = "cpu"
    matmul: int = 0
    """Side of the square matmuls; 0: 256 on CPU, 4096 on CUDA."""
    compute_s: float = 0.0
    """Target length of the compute loop; 0: 0.2 s on CPU, 0.05 s on CUDA."""
    warmup: int = 1
    repeats: int = 5
    timeout_s: float = 120.0

    def side(self) -> int:
        return self.matmul or (256 if self.device == "cpu" else 4096)

    def target_s(self) -> float:
        return self.compute_s or (0.2 if self.device == "cpu" else 0.05)


def overlap_efficiency(compute_s: float, comm_s: float, both_s: float) -> float:
    """``e`` of ``both = max(c, e·m) + (1 − e)·m`` for ``m ≤ c``, clipped to [0, 1]."""
    if comm_s <= 0:
        raise InputError("the all-gather took no time: nothing to overlap", field="comm_s")
    return min(1.0, max(0.0, (compute_s + comm_s - both_s) / comm_s))


def _timed(fn: Any, device: Any) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def _measure(rank: int, world: int, device: Any, *, settings: OverlapSettings) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    n = settings.side()
    a = torch.randn(n, n, device=device, dtype=dtype)

    def loop(iters: int) -> None:
        for _ in range(iters):
            torch.mm(a, a)

    loop(2)
    one = _timed(lambda: loop(5), device) / 5
    probe = 1 << 20
    src = torch.ones(probe // 4, dtype=torch.float32, device=device).contiguous()
    dst = torch.empty(src.numel() * world, dtype=torch.float32, device=device)

    def gather(s: Any, d: Any, async_op: bool = False) -> Any:
        if device.type == "cuda":
            return dist.all_gather_into_tensor(d, s, async_op=async_op)
        return dist.all_gather(list(d.chunk(world)), s, async_op=async_op)

    gather(src, dst)
    per_byte = _timed(lambda: gather(src, dst), device) / probe
    # Rank 0 decides the loop length and message size; every rank must use the same.
    plan = torch.tensor([max(1.0, settings.target_s() / max(one, 1e-9)),
                         max(4096.0, 0.5 * settings.target_s() / max(per_byte, 1e-15))], dtype=torch.float64,
                        device=device)  # NCCL groups carry device tensors only
    dist.broadcast(plan, 0)
    iters, nbytes = int(plan[0].item()), int(plan[1].item()) // 4 * 4
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device).contiguous()
    dst = torch.empty(src.numel() * world, dtype=torch.float32, device=device)

    def both() -> None:
        work = gather(src, dst, async_op=True)
        loop(iters)
        work.wait()

    rows = []
    for i in range(settings.warmup + settings.repeats):
        times = []
        for fn in (lambda: loop(iters), lambda: gather(src, dst), both):
            dist.barrier()
            times.append(_timed(fn, device))
        slowest = torch.tensor(times, dtype=torch.float64, device=device)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        if i >= settings.warmup:
            rows.append([float(t) for t in slowest.cpu()])
    return {"iters": iters, "matmul": n, "bytes_per_rank": nbytes, "world": world,
            "compute_s": [r[0] for r in rows], "comm_s": [r[1] for r in rows], "both_s": [r[2] for r in rows]}


def measure_overlap(settings: OverlapSettings) -> dict[str, Any] | None:
    """Run the measurement; rank 0's medians and ``e`` (None on other torchrun ranks)."""
    joined = under_torchrun()
    nprocs = joined[1] if joined else settings.nprocs
    if nprocs < 2:
        raise InputError("need at least 2 processes", field="nprocs")
    raw = run_ranks(partial(_measure, settings=settings), nprocs=nprocs, device_kind=settings.device,
                    timeout_s=settings.timeout_s, prefix="pfplan-overlap-")
    if raw is None:
        return None
    medians = {k: statistics.median(raw[k]) for k in ("compute_s", "comm_s", "both_s")}
    c, m, both = medians["compute_s"], medians["comm_s"], medians["both_s"]
    return {**raw, **{f"median_{k}": v for k, v in medians.items()},
            "overlap_efficiency": overlap_efficiency(c, m, both),
            # the all-gather outlasted the loop and "both" took no longer than it: the loop hid
            # entirely, so e is at least c/m but the run cannot say how much more
            "lower_bound": m > c and both <= 1.02 * m}


def with_measured_overlap(topology: Topology, result: dict[str, Any], *, command: str) -> Topology:
    """``topology`` with its overlap efficiency measured (its bandwidth efficiency kept)."""
    comm = topology.communication
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    note = (f"overlap_efficiency measured by `{command}` on {platform.node()} at {when}: compute "
            f"{result['median_compute_s']:.4g} s, all-gather of {result['bytes_per_rank']} B per rank "
            f"{result['median_comm_s']:.4g} s, both {result['median_both_s']:.4g} s (medians of "
            f"{len(result['both_s'])}, slowest of {result['world']} ranks)")
    if comm.bandwidth_efficiency != 1.0:
        note += f"; bandwidth_efficiency {comm.bandwidth_efficiency:g} kept from before ({comm.source or 'no source'})"
    return topology.model_copy(update={"communication": Communication(
        bandwidth_efficiency=comm.bandwidth_efficiency, overlap_efficiency=round(result["overlap_efficiency"], 4),
        source=note)})
