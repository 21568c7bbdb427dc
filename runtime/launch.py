"""Start the ranks of a run and turn any rank's failure into one clear error.

Outside torchrun, :func:`launch` starts ``world_size`` local processes: ``fork`` on CPU
(a fork starts in ~0.2 s, a spawn re-imports diffusers in ~8 s) and ``spawn`` on CUDA
(CUDA cannot survive a fork); gloo on CPU, NCCL on CUDA; on CPU each rank uses
``threads`` intra-op threads (1 by default, so ranks do not fight over cores). The
parent watches its children: the first rank that raises or dies (a signal, a non-zero
exit) makes the parent kill the others and raise :class:`RuntimeFailure` naming that
rank. A rank that only saw a peer fail is not blamed when a root cause is known.

Signals: SIGINT (Ctrl-C) and SIGTERM reach the parent as an exception
(:mod:`profiles.cli_support`); the parent then kills every rank, waits for them and raises
:class:`~profiles.errors.Interrupted` ("interrupted: stopped 2 ranks, nothing written",
exit 130 / 143). Ranks ignore SIGINT (a terminal's Ctrl-C reaches the whole process group;
the parent decides) and are killed by the kernel if the parent itself dies (Linux
``PR_SET_PDEATHSIG``), so no rank outlives its run, even after a SIGKILL of the parent.

Under torchrun (``RANK`` and ``WORLD_SIZE`` set) this process joins as one rank; a
failure elsewhere then reaches it as a transfer that times out after ``--timeout``.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import socket
import time
import traceback
from datetime import timedelta
from typing import Any

from profiles.errors import Interrupted
from runtime.errors import RuntimeFailure

GRACE_S = 0.5
"""After the first failure, how long to wait for a better-placed root cause."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _init_group(rank: int, world_size: int, backend: str, timeout_s: float, init_method: str | None) -> None:
    import torch.distributed as dist

    kwargs: dict[str, Any] = {"backend": backend, "rank": rank, "world_size": world_size,
                              "timeout": timedelta(seconds=timeout_s)}
    if init_method:
        kwargs["init_method"] = init_method
    dist.init_process_group(**kwargs)


def gpu_index(device_id: str) -> int | None:
    """The local GPU index of a topology device id: ``node1/gpu3`` → 3 (None if not a GPU id)."""
    _, _, leaf = device_id.rpartition("/")
    digits = leaf.removeprefix("gpu")
    return int(digits) if leaf.startswith("gpu") and digits.isdigit() else None


def _make_context(job: Any, rank: int, world_size: int) -> Any:
    import torch

    from runtime.dist_context import DistContext

    device = torch.device(job.device)
    if job.device.startswith("cuda"):
        count = max(torch.cuda.device_count(), 1)
        placed = job.plan.placement[rank] if rank < len(job.plan.placement) else None
        local = gpu_index(placed) if placed else None
        if local is None or local >= count:
            local = int(os.environ.get("LOCAL_RANK", rank)) % count
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return DistContext(rank=rank, world_size=world_size, degrees=job.plan.degrees.as_dict(),
                       timeout_s=job.timeout_s, device=device)


def describe(exc: BaseException) -> str:
    """One line for a rank's exception: its message and where it was raised (``file:line``)."""
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    message = getattr(exc, "one_line", lambda: f"{type(exc).__name__}: {exc}")()
    return f"{message}{where}"


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphan ranks); elsewhere a no-op."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _rank_signals() -> None:
    """A rank leaves Ctrl-C to the parent and dies plainly on SIGTERM (it inherited the parent's handlers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()


def _child(job: Any, rank: int, world_size: int, init_method: str, results: Any) -> None:
    """Body of one local rank process: run, report the payload or the error, exit."""
    _rank_signals()
    import torch

    from runtime.dist_context import PeerFailure
    from runtime.worker import run_rank

    try:
        if not job.device.startswith("cuda"):
            torch.set_num_threads(job.threads)
        _init_group(rank, world_size, "nccl" if job.device.startswith("cuda") else "gloo", job.timeout_s,
                    init_method)
        ctx = _make_context(job, rank, world_size)
        if job.device.startswith("cuda"):
            job = dataclasses.replace(job, device=str(ctx.device))
        ctx.make_groups()
        payload = run_rank(job, ctx)
        results.put(("ok", rank, payload))
    except PeerFailure as exc:
        results.put(("peer", rank, exc.one_line()))
        raise SystemExit(1) from None
    except BaseException as exc:  # noqa: BLE001 - report anything, the parent decides
        results.put(("error", rank, describe(exc)))
        raise SystemExit(1) from None
    # returning lets multiprocessing flush the queue before the process exits


def launch(job: Any, world_size: int, *, in_process: bool = False, fresh_process: bool = False
           ) -> list[dict[str, Any]]:
    """Run ``job`` on ``world_size`` ranks; every rank's payload (rank order) or RuntimeFailure.

    ``fresh_process``: a one-rank job also runs in a new rank process, as a ``pfrun`` command's
    own process would be: what a profiler or benchmark times then includes the first forward and
    first decode of a process that has run nothing before (run in the calling process after
    earlier runs, the VAE decode of pixart-tiny took 88-103 ms against 92-101 ms fresh, and the
    fresh latency was ~10 % longer; 2026-12-02)."""
    if in_process and world_size == 1:
        return [_run_in_process(job)]
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return _join_torchrun(job)
    if world_size == 1 and not fresh_process:
        return [_run_in_process(job)]
    return _launch_local(job, world_size)


def _run_in_process(job: Any) -> dict[str, Any]:
    """Rank 0 of a one-rank job in this process; its failure is the same one line as a rank process's."""
    import torch

    from runtime.dist_context import DistContext
    from runtime.worker import run_rank

    threads = torch.get_num_threads()
    if not job.device.startswith("cuda"):
        torch.set_num_threads(job.threads)
    try:
        ctx = DistContext.single(job.plan.degrees.as_dict(), job.timeout_s, torch.device(job.device))
        return run_rank(job, ctx)
    except KeyboardInterrupt as exc:
        raise Interrupted("interrupted: stopped 1 rank, nothing written", signum=signal.SIGINT) from exc
    except Interrupted as exc:
        raise Interrupted("interrupted: stopped 1 rank, nothing written", signum=exc.signum) from exc
    except Exception as exc:  # noqa: BLE001 - as in a rank process: one line naming the rank
        raise _failure({0: ("error", describe(exc))}) from exc
    finally:
        torch.set_num_threads(threads)


def _join_torchrun(job: Any) -> list[dict[str, Any]]:
    import torch.distributed as dist

    from runtime.worker import run_rank

    import torch

    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if not job.device.startswith("cuda"):
        torch.set_num_threads(job.threads)
    if world_size != job.plan.world_size:
        raise RuntimeFailure(f"torchrun started {world_size} ranks, the plan needs {job.plan.world_size}")
    _init_group(rank, world_size, "nccl" if job.device.startswith("cuda") else "gloo", job.timeout_s, None)
    ctx = _make_context(job, rank, world_size)
    ctx.make_groups()
    try:
        payload = run_rank(job, ctx)
    except RuntimeFailure:
        raise  # a peer's failure, already one line naming the peer
    except Exception as exc:  # noqa: BLE001 - one line naming this rank, as in local rank processes
        raise RuntimeFailure(f"rank {rank} failed: {describe(exc)}") from exc
    gathered: list[Any] = [None] * world_size if rank == 0 else None  # type: ignore[assignment]
    dist.gather_object(payload, gathered, dst=0)
    dist.destroy_process_group()
    return gathered if rank == 0 else []


def preload(job: Any) -> None:
    """Import the diffusers classes before forking, so children start in a fraction of a second."""
    import diffusers

    preset = job.preset
    for name in (preset.diffusers_class, preset.scheduler, "AutoencoderKL"):
        getattr(diffusers, name, None)


def _launch_local(job: Any, world_size: int) -> list[dict[str, Any]]:
    import multiprocessing as mp

    cuda = job.device.startswith("cuda")
    if not cuda:
        preload(job)
    ctx = mp.get_context("spawn" if cuda else "fork")
    results = ctx.Queue()
    init_method = f"tcp://127.0.0.1:{free_port()}"
    procs = [ctx.Process(target=_child, args=(job, r, world_size, init_method, results), daemon=True,
                         name=f"pfrun-rank{r}") for r in range(world_size)]
    for proc in procs:
        proc.start()
    payloads: dict[int, dict[str, Any]] = {}
    failures: dict[int, tuple[str, str]] = {}
    first_failure: float | None = None

    def record(kind: str, rank: int, body: Any) -> None:
        if kind == "ok":
            payloads[rank] = body
        else:
            failures.setdefault(rank, (kind, body))

    stopped_by: int | None = None
    try:
        while len(payloads) < world_size:
            try:
                record(*results.get(timeout=0.05))
            except queue.Empty:
                pass
            for rank, proc in enumerate(procs):
                code = proc.exitcode
                if code is not None and code != 0 and rank not in failures and rank not in payloads:
                    try:  # the rank may have reported just before exiting
                        while True:
                            record(*results.get_nowait())
                    except queue.Empty:
                        pass
                    if rank not in failures:
                        failures[rank] = ("died", _exit_reason(code))
            if failures:
                first_failure = first_failure or time.monotonic()
                own = [r for r, (k, _) in failures.items() if k != "peer"]
                if own or time.monotonic() - first_failure > GRACE_S:
                    raise _failure(failures)
    except KeyboardInterrupt:
        stopped_by = signal.SIGINT
    except Interrupted as exc:
        stopped_by = exc.signum
    finally:
        running = _stop_ranks(procs, kill=bool(failures) or len(payloads) < world_size)
        results.close()
    if stopped_by is not None:
        raise Interrupted(f"interrupted: stopped {running} rank{'s' if running != 1 else ''}, nothing written",
                          signum=stopped_by)
    return [payloads[r] for r in range(world_size)]


def _stop_ranks(procs: list[Any], *, kill: bool) -> int:
    """Kill (when ``kill``) and reap every rank process; how many were still running. A second
    Ctrl-C or SIGTERM meanwhile is ignored, so the reaping always finishes."""
    try:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        running = sum(proc.is_alive() for proc in procs)
        for proc in procs:
            if kill:
                proc.kill()  # only our own children, by handle
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        return running
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _failure(failures: dict[int, tuple[str, str]]) -> RuntimeFailure:
    """Blame the root cause: a rank that died or raised on its own, before ranks that saw a peer fail."""
    order = {"died": 0, "error": 1, "peer": 2}
    rank, (kind, body) = min(failures.items(), key=lambda item: (order.get(item[1][0], 3), item[0]))
    if kind == "died":
        text = f"rank {rank} {body}"
    else:
        text = f"rank {rank} failed: {body.removeprefix(f'rank {rank}: ')}"
    others = sorted(r for r in failures if r != rank)
    if others:
        text += f" (then rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} stopped)"
    return RuntimeFailure(text + "; every rank was stopped, no output written")
