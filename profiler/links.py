"""``pfplan profile links``: measure point-to-point and collective times between ranks.

Ranks are placed on the topology's devices in order (rank i on device i). For each route
class the first ``nprocs`` devices span (or for every pair, ``--all-pairs``), a ping-pong
between the pair's ranks gives the one-way time of each message size (half the round
trip); the fit ``time = latency + bytes / bandwidth`` is weighted by 1/time², so small
messages pin the latency and large ones the bandwidth. All-gather, all-to-all and
all-reduce are timed the same way for each group size (2, 4, … and all ranks).

Launch: :mod:`profiler.rank_launch` (local processes, or the ranks torchrun started).
Every tensor sent is contiguous (gloo hangs the receiver otherwise).
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable

from profiles.errors import InputError
from profiler.rank_launch import run_ranks, sync, under_torchrun
from profiles.costs.profile_format import CollectiveCurve, LinkFit, LinkPoint, Profile, ProfileProvenance, SoftwareStack
from profiles.topology.graph import ClusterGraph

KB = 1024
CPU_SIZES = tuple(4 * KB * 4 ** i for i in range(7))  # 4 KB … 16 MB
GPU_SIZES = tuple(4 * KB * 4 ** i for i in range(10))  # 4 KB … 1 GB
OPS = ("all_gather", "all_to_all", "all_reduce")


@dataclass(frozen=True)
class LinkSettings:
    nprocs: int = 2
    device: str = "cpu"
    sizes_bytes: tuple[int, ...] = ()
    """Message sizes; empty: 4 KB … 16 MB on CPU, … 256 MB on CUDA."""
    all_pairs: bool = False
    collectives: bool = True
    warmup: int = 2
    repeats: int = 7
    timeout_s: float = 120.0
    in_loop: bool = False
    """Also time each collective of the whole group inside a compute loop (:func:`_in_loop`)."""

    def sizes(self) -> tuple[int, ...]:
        if self.sizes_bytes:
            return self.sizes_bytes
        return CPU_SIZES if self.device == "cpu" else tuple(s for s in GPU_SIZES if s <= 256 * KB * KB)


@dataclass
class RankPlan:
    """What every rank runs, in the same order (pairs by route class, collective groups)."""

    pairs: list[tuple[int, int, str]] = field(default_factory=list)
    group_sizes: list[int] = field(default_factory=list)


def rank_plan(cluster: ClusterGraph, settings: LinkSettings) -> RankPlan:
    """Which rank pairs to measure: one per route class (first found), or all of them."""
    n = settings.nprocs
    if n < 2:
        raise InputError("need at least 2 processes", field="nprocs")
    if n > len(cluster.devices):
        raise InputError(f"{n} processes but the topology has {len(cluster.devices)} devices", field="nprocs")
    plan = RankPlan()
    seen: set[str] = set()
    for a in range(n):
        for b in range(a + 1, n):
            cls = cluster.route(cluster.devices[a], cluster.devices[b]).route_class
            if settings.all_pairs or cls not in seen:
                plan.pairs.append((a, b, cls))
                seen.add(cls)
    plan.group_sizes = sorted({g for g in (2 ** i for i in range(1, 8)) if g <= n} | {n})
    return plan


def fit_latency_bandwidth(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(latency µs, bandwidth GB/s) of ``t = a + bytes·s``, least squares weighted by 1/t²."""
    w = [1.0 / max(t, 1e-9) ** 2 for _, t in points]
    sw = sum(w)
    sx = sum(wi * n for wi, (n, _) in zip(w, points))
    sy = sum(wi * t for wi, (_, t) in zip(w, points))
    sxx = sum(wi * n * n for wi, (n, _) in zip(w, points))
    sxy = sum(wi * n * t for wi, (n, t) in zip(w, points))
    det = sw * sxx - sx * sx
    slope = (sw * sxy - sx * sy) / det if det > 0 else 0.0
    if slope <= 0:  # flat curve: bandwidth from the largest message alone
        n_max, t_max = max(points)
        slope = t_max / n_max
    intercept = (sy - slope * sx) / sw
    if intercept <= 0:
        # Noise (other jobs on the cores) can tilt the fit below zero; a link always has some
        # latency, so take the smallest message's time less its transfer time, or failing
        # that the smallest message's whole time (an upper bound).
        n_min, t_min = min(points)
        intercept = t_min - n_min * slope if t_min > n_min * slope else t_min
    return intercept * 1e6, 1.0 / slope / 1e9


def _measure(rank: int, world: int, device: Any, *, settings: LinkSettings, plan: RankPlan) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    out: dict[str, Any] = {"p2p": [], "collectives": []}
    for a, b, cls in plan.pairs:
        dist.barrier()
        for size in settings.sizes():
            buf = torch.zeros(size // 4, dtype=torch.float32, device=device).contiguous()
            times = []
            for i in range(settings.warmup + settings.repeats):
                dist.barrier()
                sync(device)
                start = time.perf_counter()
                if rank == a:
                    dist.send(buf, b)
                    dist.recv(buf, b)
                elif rank == b:
                    dist.recv(buf, a)
                    dist.send(buf, a)
                sync(device)
                if i >= settings.warmup:
                    times.append((time.perf_counter() - start) / 2)
            if rank == a:
                out["p2p"].append({"pair": f"{a}->{b}", "route_class": cls, "bytes": size,
                                   "seconds": statistics.median(times), "repeats": len(times)})
    if not settings.collectives:
        return out
    for g in plan.group_sizes:
        group = dist.new_group(list(range(g))) if g < world else dist.group.WORLD
        for op in OPS:
            for size in settings.sizes():
                if rank >= g:
                    continue
                elems = max(g, (size // 4) // g * g)
                src = torch.ones(elems, dtype=torch.float32, device=device).contiguous()
                dst = torch.empty(elems * g if op == "all_gather" else elems, dtype=torch.float32, device=device)
                times = []
                for i in range(settings.warmup + settings.repeats):
                    dist.barrier(group=group)
                    sync(device)
                    start = time.perf_counter()
                    if op == "all_gather" and device.type == "cuda":
                        dist.all_gather_into_tensor(dst, src, group=group)
                    elif op == "all_gather":
                        dist.all_gather(list(dst.chunk(g)), src, group=group)
                    elif op == "all_to_all":
                        dist.all_to_all_single(dst, src, group=group)
                    else:
                        dist.all_reduce(src, group=group)
                    sync(device)
                    if i >= settings.warmup:
                        times.append(time.perf_counter() - start)
                if rank == 0:
                    out["collectives"].append({"op": op, "group_size": g, "bytes": elems * 4,
                                               "seconds": statistics.median(times), "repeats": len(times)})
        dist.barrier()
    if settings.in_loop and device.type == "cpu":
        out["in_loop"] = _in_loop(rank, world, settings)
    return out


IN_LOOP_BYTES = 64 * KB
"""The size whose in-loop time also gives ``in_loop_extra_us``: a tiny preset's activations (pixart-tiny: 256 tokens × 32 × 2 × 4 B)."""
IN_LOOP_SIZES = (4 * KB, IN_LOOP_BYTES, 1024 * KB)
"""Bytes per rank of the in-loop calls: around a tiny preset's messages (text, patch and image activations)."""
IN_LOOP_CALLS = 40
IN_LOOP_KERNELS = 15
"""(linear, GELU, layer norm) triples between two calls: ≈ 1 ms on this VM, a tiny preset's block."""


def compute_slice(kernels: int = IN_LOOP_KERNELS) -> Callable[[], None]:
    """A slice of compute between two calls: ``kernels`` (linear, GELU, layer norm) triples on a tiny
    preset's activations (≈ one tiny block at the default)."""
    import torch

    x, w = torch.randn(2, 256, 32), torch.randn(32, 32)

    def compute() -> None:
        y = x
        for _ in range(kernels):
            y = torch.nn.functional.layer_norm(torch.nn.functional.gelu(torch.nn.functional.linear(y, w)), (32,))
    return compute


def excess_per_call(compute: Callable[[], None], call: Callable[[], None], *, warmup: int, repeats: int,
                    calls: int = IN_LOOP_CALLS) -> tuple[list[float], float]:
    """(per pair, seconds per call of ``calls`` calls each after ``compute``, less the same loop without the
    calls; the mean ``compute`` alone). The loops start at a barrier, and the bare one ends at one (the loop
    with calls ends together); pairs, so load that comes and goes hits both sides."""
    import torch.distributed as dist

    def loop(with_calls: bool) -> float:
        dist.barrier()
        start = time.perf_counter()
        for _ in range(calls):
            compute()
            if with_calls:
                call()
        if not with_calls:
            dist.barrier()
        return time.perf_counter() - start

    start = time.perf_counter()
    for _ in range(calls):
        compute()
    compute_s = (time.perf_counter() - start) / calls
    excess = []
    for i in range(warmup + repeats):
        bare, looped = loop(False), loop(True)
        if i >= warmup:
            excess.append((looped - bare) / calls)
    return excess, compute_s


def _in_loop(rank: int, world: int, settings: LinkSettings) -> list[dict[str, Any]]:
    """Per op and size over all ranks: seconds per call of ``IN_LOOP_CALLS`` calls, each after a slice of
    compute on every rank (small kernels, as a tiny model's blocks run), less the same compute loop
    without the calls; the runtime's collectives sit between blocks like this, not back to back.
    The calls are the runtime's own (:class:`runtime.dist_context.DistContext` on its mesh group,
    asynchronous and waited for with a timeout; sends through its pending-send queue).
    """
    import torch
    import torch.distributed as dist

    from runtime.dist_context import DistContext

    ctx = DistContext(rank=rank, world_size=world, degrees={"ulysses": world}, timeout_s=settings.timeout_s)
    ctx.make_groups()
    group = ctx.group("ulysses")
    compute = compute_slice()  # ≈ one tiny-preset block: a few dozen small kernels

    out = []
    for op, size in ((op, size) for op in (*OPS, "p2p") for size in IN_LOOP_SIZES):
        elems = max(world, (size // 4) // world * world)
        src = torch.ones(elems).contiguous()

        def call() -> None:
            if op == "all_gather":
                ctx.all_gather_cat(src, group, world, 0, "in-loop all_gather")
            elif op == "all_to_all":
                ctx.all_to_all(src, group, "in-loop all_to_all")
            elif op == "all_reduce":  # as runtime/strategies/tensor.py calls it
                ctx._wait(dist.all_reduce(src, group=group, async_op=True), "in-loop all_reduce")
            elif rank in (0, 1):  # p2p: a ping-pong of ranks 0 and 1, two one-way messages
                peer = 1 - rank
                for sender in (0, 1):
                    if rank == sender:
                        ctx.isend(src, peer)
                        ctx.flush()
                    else:
                        ctx.irecv(src.shape, src.dtype, peer).wait()

        excess, compute_s = excess_per_call(compute, call, warmup=settings.warmup, repeats=settings.repeats)
        excess = [e / (2 if op == "p2p" else 1) for e in excess]  # a ping-pong is two one-way messages
        if rank == 0:
            out.append({"op": op, "group_size": world if op != "p2p" else 2, "bytes": elems * 4,
                        "seconds": statistics.median(excess), "repeats": len(excess), "compute_s": compute_s})
    out += _stream_cpu(rank, ctx, compute, settings)
    return out


STREAM_SIZES = (4 * KB, IN_LOOP_BYTES)
"""A stage's messages on the tiny presets (a patch's activations: 4-64 KiB)."""
STREAM_OPS = ("p2p_send_cpu", "p2p_recv_cpu")
"""In-loop rows of one end's CPU per message in a one-way stream (:func:`_stream_cpu`)."""


def _stream_cpu(rank: int, ctx: Any, compute: Any, settings: LinkSettings) -> list[dict[str, Any]]:
    """Each end's own time per message of a one-way stream from rank 0 to rank 1, as a PipeFusion
    stage sends patches: the sender computes and posts an ``isend``, the receiver (its receives
    posted two ahead, as :class:`runtime.strategies.pipefusion.RecvStream` does) computes and takes
    the next message. The end measured computes three times as long per message as the other, so it
    does not wait on its peer: its loop's excess over the same loop without messages is the CPU the message
    costs that end (posting, gloo's threads sharing the cores), not the wire's latency, which
    the faster end absorbs. Ranks beyond 1 only keep the barriers."""
    import torch
    import torch.distributed as dist

    out = []
    for op, size in ((op, size) for op in STREAM_OPS for size in STREAM_SIZES):
        src = torch.ones(size // 4).contiguous()
        measured = 0 if op == "p2p_send_cpu" else 1
        slices = 3 if rank == measured else 1

        def loop(with_calls: bool) -> float:
            dist.barrier()
            start = time.perf_counter()
            posted: list[Any] = []
            if rank == 1 and with_calls:
                posted = [ctx.irecv(src.shape, src.dtype, 0) for _ in range(2)]
            for i in range(IN_LOOP_CALLS):
                for _ in range(slices):
                    compute()
                if with_calls and rank == 0:
                    ctx.isend(src, 1)
                elif with_calls and rank == 1:
                    posted.pop(0).wait()
                    if i + 2 < IN_LOOP_CALLS:
                        posted.append(ctx.irecv(src.shape, src.dtype, 0))
            elapsed = time.perf_counter() - start
            if with_calls and rank == 0:
                ctx.flush()
            dist.barrier()
            return elapsed

        excess = []
        for i in range(settings.warmup + settings.repeats):
            bare, looped = loop(False), loop(True)
            if i >= settings.warmup:
                excess.append((looped - bare) / IN_LOOP_CALLS)
        value = torch.tensor([statistics.median(excess) if rank == measured else 0.0], dtype=torch.float64)
        dist.all_reduce(value)  # the measured end's figure, to rank 0
        if rank == 0:
            out.append({"op": op, "group_size": 2, "bytes": size, "seconds": float(value.item()),
                        "repeats": len(excess)})
    return out


def measure_links(cluster: ClusterGraph, settings: LinkSettings) -> dict[str, Any] | None:
    """Run the measurement; the raw results on rank 0 (or the local launcher), else None."""
    joined = under_torchrun()
    if joined is not None and joined[1] != settings.nprocs:
        settings = LinkSettings(**{**asdict(settings), "nprocs": joined[1]})
    plan = rank_plan(cluster, settings)
    return run_ranks(partial(_measure, settings=settings, plan=plan), nprocs=settings.nprocs,
                     device_kind=settings.device, timeout_s=settings.timeout_s, prefix="pfplan-links-")


def _at_reference_size(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The in-loop row nearest :data:`IN_LOOP_BYTES` (the size ``in_loop_extra_us`` is taken at)."""
    return min(rows, key=lambda r: abs(r["bytes"] - IN_LOOP_BYTES)) if rows else None


def _points(rows: list[dict[str, Any]]) -> list[LinkPoint]:
    return [LinkPoint(bytes=r["bytes"], seconds=max(r["seconds"], 0.0), repeats=r.get("repeats", 1))
            for r in sorted(rows, key=lambda r: r["bytes"])]


def links_profile(cluster: ClusterGraph, settings: LinkSettings, raw: dict[str, Any], *, command: str) -> Profile:
    """Fit the raw timings into a links-only :class:`Profile`."""
    import torch

    by_class: dict[str, list[dict[str, Any]]] = {}
    for row in raw["p2p"]:
        by_class.setdefault(row["route_class"], []).append(row)
    links = []
    for cls, rows in by_class.items():
        sizes: dict[int, list[float]] = {}
        for r in rows:
            sizes.setdefault(r["bytes"], []).append(r["seconds"])
        points = [LinkPoint(bytes=n, seconds=statistics.median(ts), repeats=settings.repeats * len(ts))
                  for n, ts in sorted(sizes.items())]
        latency, bandwidth = fit_latency_bandwidth([(p.bytes, p.seconds) for p in points])
        fit = LinkFit(route_class=cls, pairs=sorted({r["pair"] for r in rows}), latency_us=latency,
                      bandwidth_gb_s=bandwidth, points=points)
        rows_looped = [r for r in raw.get("in_loop", []) if r["op"] == "p2p"]
        looped = _at_reference_size(rows_looped)
        if looped is not None and "0->1" in fit.pairs:  # measured between ranks 0 and 1
            extra = max(looped["seconds"] - latency * 1e-6 - looped["bytes"] / (bandwidth * 1e9), 0.0)
            fit = fit.model_copy(update={"in_loop_extra_us": extra * 1e6, "in_loop_points": _points(rows_looped)})
            for op, key in zip(STREAM_OPS, ("in_loop_send_cpu_us", "in_loop_recv_cpu_us")):
                row = _at_reference_size([r for r in raw.get("in_loop", []) if r["op"] == op])
                if row is not None:
                    fit = fit.model_copy(update={key: max(row["seconds"], 0.0) * 1e6})
        links.append(fit)
    curves = []
    keys = sorted({(r["op"], r["group_size"]) for r in raw["collectives"]})
    for op, g in keys:
        rows = [r for r in raw["collectives"] if r["op"] == op and r["group_size"] == g]
        points = [LinkPoint(bytes=r["bytes"], seconds=r["seconds"], repeats=r["repeats"]) for r in rows]
        latency, bandwidth = fit_latency_bandwidth([(p.bytes, p.seconds) for p in points])
        curve = CollectiveCurve(op=op, group_size=g, latency_us=latency, bandwidth_gb_s=bandwidth, points=points)
        rows_looped = [r for r in raw.get("in_loop", []) if r["op"] == op and r["group_size"] == g]
        looped = _at_reference_size(rows_looped)
        if rows_looped:
            curve = curve.model_copy(update={"in_loop_points": _points(rows_looped)})
        if looped is not None:  # beyond what the back-to-back points already charge at that size
            from simulator.network import CollectiveTiming

            back_to_back = CollectiveTiming(op, g, tuple((p.bytes, p.seconds) for p in points), bandwidth)
            extra = max(looped["seconds"] - back_to_back.time_s(looped["bytes"]), 0.0)
            curve = curve.model_copy(update={"in_loop_extra_us": extra * 1e6})
        curves.append(curve)
    first = cluster.devices[0]
    from profiler.compute import device_identity

    _, device_name = device_identity("cuda:0" if settings.device == "cuda" else "cpu", cluster.device_gpu[first])
    nccl = None
    if settings.device == "cuda":
        nccl = ".".join(map(str, torch.cuda.nccl.version()))
    return Profile(model=None, device=cluster.device_gpu[first], device_name=device_name,
                   software=SoftwareStack(torch=torch.__version__, python=platform.python_version(),
                                          cuda=torch.version.cuda if settings.device == "cuda" else None, nccl=nccl,
                                          threads=1, distributed_backend="nccl" if settings.device == "cuda" else "gloo"),
                   links=links, collectives=curves,
                   provenance=ProfileProvenance(kind="measured", command=command, host=platform.node(),
                                                notes=[f"{settings.nprocs} ranks on {cluster.topology.name} devices "
                                                       f"0..{settings.nprocs - 1}; p2p = half a ping-pong; "
                                                       f"medians of {settings.repeats} after {settings.warmup} warm-up"]))


def measured_topology(cluster: ClusterGraph, profile: Profile, *, command: str) -> Any:
    """A copy of the cluster's topology whose link figures come from ``profile``'s fits.

    A route's latency is the sum of its links' and its bandwidth their minimum, so a fitted
    class sets the links that class runs over: the nearest PCIe class (PIX, PXB or PHB) sets
    every device link (latency split evenly over the route's links), NVL the NVLink domains,
    SYS the socket link and NET the network (each less the device links' share of latency).
    Switch uplinks and classes not measured keep their figures; ``source`` says which is which.
    """
    from profiles.topology.format import Link

    fits = {f.route_class: f for f in profile.links}
    reps = {}
    for a_i, a in enumerate(cluster.devices):
        for b in cluster.devices[a_i + 1:]:
            reps.setdefault(cluster.route(a, b).route_class, cluster.route(a, b))
    topo = cluster.topology.model_copy(deep=True)
    pcie = next((c for c in ("PIX", "PXB", "PHB") if c in fits and c in reps), None)
    device_latency = None
    for node in topo.nodes:
        if pcie:
            fit = fits[pcie]
            device_latency = fit.latency_us / max(1, len(reps[pcie].links))
            node.device_link = Link(bandwidth_gb_s=fit.bandwidth_gb_s, latency_us=device_latency)
        if "NVL" in fits and "NVL" in reps:
            fit = fits["NVL"]
            for domain in node.nvlink:
                domain.link = Link(bandwidth_gb_s=fit.bandwidth_gb_s,
                                   latency_us=fit.latency_us / max(1, len(reps["NVL"].links)))
        if "SYS" in fits and "SYS" in reps and node.socket_link is not None:
            fit = fits["SYS"]
            rest = (len(reps["SYS"].links) - 1) * (device_latency or 0.0)
            node.socket_link = Link(bandwidth_gb_s=fit.bandwidth_gb_s, latency_us=max(0.0, fit.latency_us - rest))
    if "NET" in fits and "NET" in reps and topo.network is not None:
        fit = fits["NET"]
        rest = (len(reps["NET"].links) - 1) * (device_latency or 0.0)
        topo.network = Link(bandwidth_gb_s=fit.bandwidth_gb_s, latency_us=max(0.0, fit.latency_us - rest))
    measured = sorted(c for c in fits if c in reps and (c == pcie or c in ("NVL", "SYS", "NET")))
    comm = topo.communication
    if measured and comm.bandwidth_efficiency != 1.0:
        # Measured links already run at what transfers achieve, so the efficiency goes to 1;
        # the links nothing measured keep their effective speed: data sheet × old efficiency.
        _scale_kept_links(topo, comm.bandwidth_efficiency, pcie=pcie is not None, measured=set(measured))
        topo.communication = comm.model_copy(update={
            "bandwidth_efficiency": 1.0,
            "source": f"bandwidth_efficiency {comm.bandwidth_efficiency:g} folded into the unmeasured links' "
                      f"figures and reset to 1 by `{command}` (measured link figures); overlap_efficiency kept "
                      f"from: {comm.source or 'the default'}"})
    kept = sorted(c for c in reps if c not in measured)
    topo.source = (f"link figures of route classes {', '.join(measured) or 'none'} measured by `{command}` "
                   f"on {profile.provenance.created_at}"
                   + (f"; classes {', '.join(kept)} and switch uplinks keep the figures of "
                      f"{cluster.topology.name}" if kept else "; switch uplinks keep their previous figures"))
    return topo


def _scale_kept_links(topo: Any, factor: float, *, pcie: bool, measured: set[str]) -> None:
    """Multiply the bandwidth of every link no measurement replaced by ``factor``."""
    def scaled(link: Any) -> Any:
        return link.model_copy(update={"bandwidth_gb_s": link.bandwidth_gb_s * factor})

    def switches(items: list[Any]) -> None:
        for switch in items:
            switch.uplink = scaled(switch.uplink)
            switches(switch.switches)

    for node in topo.nodes:
        if not pcie:
            node.device_link = scaled(node.device_link)
        for socket_ in node.sockets:
            switches(socket_.switches)
        if "SYS" not in measured and node.socket_link is not None:
            node.socket_link = scaled(node.socket_link)
        if "NVL" not in measured:
            for domain in node.nvlink:
                domain.link = scaled(domain.link)
    if "NET" not in measured and topo.network is not None:
        topo.network = scaled(topo.network)
