"""Start the ranks of a distributed measurement here, or join the ones torchrun started.

Locally the launcher starts ``nprocs`` processes itself (``fork`` on CPU, the fast start;
``spawn`` for CUDA, which must not be forked), one thread per rank, gloo on CPU and NCCL on
CUDA, with a timeout on every collective. Under ``torchrun`` (``RANK`` and ``WORLD_SIZE``
set) this process is one of the ranks. Either way rank 0's JSON result comes back to the
caller on rank 0 (the local launcher counts as rank 0); other ranks get None.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

Measure = Callable[[int, int, Any], dict[str, Any]]
"""``measure(rank, world, device)`` → rank 0's JSON-able result (others' is ignored)."""


def local_rank(rank: int) -> int:
    """The GPU index of ``rank`` on its node (torchrun sets LOCAL_RANK; local launches use one node)."""
    import torch

    return int(os.environ.get("LOCAL_RANK", rank)) % max(1, torch.cuda.device_count())


def sync(device: Any) -> None:
    """Wait for the device's queued work (timings on CUDA are asynchronous otherwise)."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, device_kind: str, timeout_s: float, measure: Measure,
            out_path: str) -> None:
    import torch
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank(rank))
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    try:
        device = torch.device(f"cuda:{local_rank(rank)}" if device_kind == "cuda" else "cpu")
        result = measure(rank, world, device)
        if rank == 0:
            Path(out_path).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def under_torchrun() -> tuple[int, int] | None:
    """(rank, world size) when torchrun started this process, else None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None


def run_ranks(measure: Measure, *, nprocs: int, device_kind: str, timeout_s: float, prefix: str) -> Any:
    """Run ``measure`` on every rank; rank 0's result here (None on other torchrun ranks)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        out_path = str(Path(tmp) / "result.json")
        joined = under_torchrun()
        if joined is not None:
            rank, world = joined
            _worker(rank, world, int(os.environ.get("MASTER_PORT", "29500")), device_kind, timeout_s, measure,
                    out_path)
            return json.loads(Path(out_path).read_text()) if rank == 0 else None
        import torch.multiprocessing as mp

        method = "spawn" if device_kind == "cuda" else "fork"
        mp.start_processes(_worker, args=(nprocs, free_port(), device_kind, timeout_s, measure, out_path),
                           nprocs=nprocs, start_method=method, join=True)
        return json.loads(Path(out_path).read_text())
