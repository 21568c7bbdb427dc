"""Measured trace events of one rank, in the shared trace format (:mod:`simulator.trace`).

Each rank records its own spans against a common start (taken right after a barrier;
``perf_counter`` is one monotonic clock for all local processes). Rank 0 merges the
ranks' events into one :class:`~simulator.trace.Trace` with ``source="measured"``.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from simulator.trace import Trace, TraceEvent, TraceMeta, track_names


@dataclass
class Recorder:
    """Spans of one rank; times are µs from ``t0``."""

    rank: int
    t0: float = field(default_factory=time.perf_counter)
    events: list[dict[str, Any]] = field(default_factory=list)
    cuda: bool = False
    """On CUDA a span ends when the current stream is done (not when the kernels were queued);
    only the compute stream is synchronised, so outstanding sends keep overlapping."""

    def restart(self) -> None:
        self.t0 = time.perf_counter()
        self.events.clear()

    def now_s(self) -> float:
        return time.perf_counter() - self.t0

    def add(self, name: str, cat: str, start: float, end: float, **args: Any) -> None:
        """Record ``[start, end)`` (``perf_counter`` seconds) as one event."""
        self.events.append({"name": name, "cat": cat, "ts": (start - self.t0) * 1e6, "dur": (end - start) * 1e6,
                            "tid": self.rank, "args": {k: v for k, v in args.items() if v is not None}})

    @contextmanager
    def span(self, name: str, cat: str, **args: Any) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                import torch

                torch.cuda.current_stream().synchronize()
            self.add(name, cat, start, time.perf_counter(), **args)


def merge_trace(per_rank: list[list[dict[str, Any]]], *, model: str, plan: dict[str, Any], device: str,
                command: str, latency_s: float | None) -> Trace:
    events = track_names(len(per_rank))
    for rank_events in per_rank:
        events.extend(TraceEvent(**e) for e in rank_events)
    meta = TraceMeta(source="measured", model=model, plan=plan, device=device, command=command, latency_s=latency_s)
    return Trace(traceEvents=events, metadata=meta)


def record_pass(rec: Recorder, start: float, end: float, intervals: Sequence[tuple], name: str,
                **args: object) -> None:
    """A pass [start, end) as ``compute`` spans between its transfers, which become ``collective``
    spans called ``name``; the two never overlap, so a trace comparison can add them up.

    Each interval is ``(start, end, bytes)``, or ``(start, end, bytes, overlapped)`` for a
    transfer that ran beside compute and was waited for (only the exposed wait is recorded),
    or ``(start, end, bytes, overlapped or None, name)`` where one pass has two kinds (USP).
    """
    cursor = start
    for a, b, nbytes, *more in intervals:
        if a > cursor:
            rec.add("blocks", "compute", cursor, a, **args)
        extra = {"overlapped": more[0]} if more and more[0] is not None else {}
        rec.add(more[1] if len(more) > 1 else name, "collective", a, b, **args, bytes=nbytes, **extra)
        cursor = b
    if end > cursor:
        rec.add("blocks", "compute", cursor, end, **args)
