"""How a gloo call's in-loop cost depends on the compute before it: CFG's exchange on two CPU ranks.

The links profile's in-loop figures (``pfplan profile links --in-loop``) put about 1 ms of compute
between calls; a ``cfg=2`` step puts a whole forward between its exchanges. This times the runtime's
own ``DistContext.exchange_cfg`` (8 KiB, two ranks, one thread each) 40 times between compute slices
of each length, against the same loop without the calls (paired, 7 pairs after 2 warm-up pairs), and
prints the compute per slice and the median extra per call::

    python benchmarks/in_loop_gap.py                 # slices of 15 and 60 kernel triples
    python benchmarks/in_loop_gap.py --kernels 15,30,60,120
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiler.rank_launch import run_ranks  # noqa: E402

CALLS, WARMUP, PAIRS = 40, 2, 7


def _measure(rank: int, world: int, device: object, *, kernels: tuple[int, ...]) -> dict | None:
    import torch

    from profiler.links import compute_slice, excess_per_call
    from runtime.dist_context import DistContext

    ctx = DistContext(rank=rank, world_size=world, degrees={"cfg": world}, timeout_s=60)
    ctx.make_groups()
    src = torch.ones(2048)
    out = {}
    for k in kernels:
        excess, compute_s = excess_per_call(compute_slice(k), lambda: ctx.exchange_cfg(src), warmup=WARMUP,
                                            repeats=PAIRS, calls=CALLS)
        out[k] = (compute_s, statistics.median(excess))
    return out if rank == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default="15,60", help="Kernel triples per compute slice, comma-separated.")
    args = parser.parse_args()
    try:
        kernels = tuple(int(k) for k in args.kernels.split(","))
    except ValueError:
        kernels = ()
    if not kernels or any(k <= 0 for k in kernels):
        print(f"--kernels: expected positive integers separated by commas, got {args.kernels!r}", file=sys.stderr)
        return 2
    result = run_ranks(partial(_measure, kernels=kernels), nprocs=2, device_kind="cpu", timeout_s=600,
                       prefix="pfplan-gap-")
    print("| kernel triples | compute between calls ms | extra per exchange ms |")
    print("|---|---|---|")
    for k, (compute_s, extra_s) in sorted(result.items()):
        print(f"| {k} | {compute_s * 1e3:.2f} | {extra_s * 1e3:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
