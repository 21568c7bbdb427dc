"""The serving simulation: requests queue in front of replicas; a routing policy picks the queue.

A discrete-event model (simpy) of a fleet of plan *replicas*. Each replica serves one batch
at a time: it takes the request at the head of its queue plus, when batching, the other
queued requests of the same shape (resolution, steps) up to its batch limit, and is busy
for the service time its :class:`Replica` prices (the event simulator's latency for that
shape and batch, see :mod:`planner.capacity`). Service times are deterministic, so with
Poisson arrivals and ``routing="shared"`` this is exactly an M/D/c queue (the tests hold
it to the closed forms).

Routing (decided when a request arrives):

* ``shared``: one FIFO in front of every replica; a free replica takes the head (M/D/c).
* ``jsq``: join the replica with the fewest requests queued or in service.
* ``least-work``: join the replica that would finish it first (its remaining busy time,
  its queue's service times, then this request's); the sensible choice for mixed replicas.
* ``round-robin``: replicas in turn.

A request no replica can serve (a trace shape none of the plans runs) is a one-line error.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Literal

import simpy

from planner.arrivals import Request
from profiles.errors import InputError

Routing = Literal["shared", "jsq", "least-work", "round-robin"]
ROUTINGS: tuple[str, ...] = ("shared", "jsq", "least-work", "round-robin")


@dataclass
class Replica:
    """One plan instance: ``service_s(shape, batch)`` seconds to serve ``batch`` requests of ``shape``."""

    label: str
    devices: int
    service_s: Callable[[tuple[int, int], int], float]
    max_batch: int = 1
    """Requests served together (1: no batching)."""


@dataclass
class _State:
    replica: Replica
    queue: deque = field(default_factory=deque)
    busy_until: float = 0.0
    in_service: int = 0
    busy_s: float = 0.0
    wake: simpy.Event | None = None


@dataclass
class ServingStats:
    """Latency (arrival → image done) and waiting (arrival → service start) of the counted requests."""

    requests: int
    latencies_s: list[float]
    waits_s: list[float]
    utilisation: list[float]
    """Busy fraction of each replica over the simulated span."""
    span_s: float
    batch_sizes: dict[int, int]
    """How many batches of each size were served."""

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies (``q`` in 0..100)."""
        values = sorted(self.latencies_s)
        if not values:
            return math.nan
        return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]

    @property
    def mean_wait_s(self) -> float:
        return sum(self.waits_s) / len(self.waits_s) if self.waits_s else math.nan

    def attainment(self, slo_s: float) -> float:
        """Share of requests whose latency met ``slo_s``."""
        return sum(1 for x in self.latencies_s if x <= slo_s) / len(self.latencies_s) if self.latencies_s else 0.0

    @property
    def mean_utilisation(self) -> float:
        return sum(self.utilisation) / len(self.utilisation) if self.utilisation else 0.0

    def summary(self, slo_s: float | None = None) -> dict[str, float]:
        out = {"p50_s": self.percentile(50), "p95_s": self.percentile(95), "p99_s": self.percentile(99),
               "mean_wait_s": self.mean_wait_s, "utilisation": self.mean_utilisation}
        if slo_s is not None:
            out["slo_attainment"] = self.attainment(slo_s)
        return out


def serve(requests: list[Request], replicas: list[Replica], *, routing: Routing = "least-work",
          warmup_fraction: float = 0.05) -> ServingStats:
    """Simulate ``requests`` through ``replicas``; the first ``warmup_fraction`` of arrivals are not counted."""
    if not replicas:
        raise InputError("expected at least one replica", field="replicas")
    if routing not in ROUTINGS:
        raise InputError(f"unknown routing {routing!r}; choose one of {', '.join(ROUTINGS)}", field="--routing")
    env = simpy.Environment()
    states = [_State(r) for r in replicas]
    shared: deque = deque()
    skip = int(len(requests) * warmup_fraction)
    latencies: list[float] = []
    waits: list[float] = []
    batch_sizes: dict[int, int] = {}
    servable: dict[tuple[int, int], list[_State]] = {}

    def able(shape: tuple[int, int]) -> list[_State]:
        if shape not in servable:
            ok = []
            for s in states:
                try:
                    if s.replica.service_s(shape, 1) > 0:
                        ok.append(s)
                except InputError:
                    pass
            if not ok:
                raise InputError(f"no replica serves {shape[0]} px, {shape[1]} steps", field="requests")
            servable[shape] = ok
        return servable[shape]

    def take_batch(s: _State, queue: deque) -> list[tuple[int, Request]]:
        first = queue.popleft()
        batch = [first]
        if s.replica.max_batch > 1 and queue:
            rest = deque()
            while queue and len(batch) < s.replica.max_batch:
                item = queue.popleft()
                (batch if item[1].shape == first[1].shape else rest).append(item)
            queue.extendleft(reversed(rest))
        return batch

    def worker(s: _State):
        queue = shared if routing == "shared" else s.queue
        while True:
            while not queue or (routing == "shared" and not _can(s, queue[0][1])):
                s.wake = env.event()
                yield s.wake
            batch = take_batch(s, queue)
            size = len(batch)
            duration = s.replica.service_s(batch[0][1].shape, size)
            start = env.now
            s.in_service, s.busy_until = size, start + duration
            yield env.timeout(duration)
            s.busy_s += duration
            s.in_service = 0
            batch_sizes[size] = batch_sizes.get(size, 0) + 1
            for index, req in batch:
                if index >= skip:
                    latencies.append(env.now - req.time_s)
                    waits.append(start - req.time_s)

    def _can(s: _State, req: Request) -> bool:
        return s in able(req.shape)

    def wake(s: _State) -> None:
        if s.wake is not None and not s.wake.triggered:
            s.wake.succeed()

    def remaining_work(s: _State, req: Request) -> float:
        busy = max(s.busy_until - env.now, 0.0) if s.in_service else 0.0
        queued = sum(s.replica.service_s(r.shape, 1) for _, r in s.queue)
        return busy + queued + s.replica.service_s(req.shape, 1)

    def arrivals():
        turn = 0
        for index, req in enumerate(requests):
            if req.time_s > env.now:
                yield env.timeout(req.time_s - env.now)
            candidates = able(req.shape)
            if routing == "shared":
                shared.append((index, req))
                for s in candidates:
                    wake(s)
                continue
            if routing == "round-robin":
                target = candidates[turn % len(candidates)]
                turn += 1
            elif routing == "jsq":
                target = min(candidates, key=lambda s: len(s.queue) + s.in_service)
            else:
                target = min(candidates, key=lambda s: remaining_work(s, req))
            target.queue.append((index, req))
            wake(target)

    for s in states:
        env.process(worker(s))
    done = env.process(arrivals())
    env.run(until=done)
    while any(s.queue or s.in_service for s in states) or shared:
        env.step()
    span = env.now or 1.0
    return ServingStats(len(requests), latencies, waits, [s.busy_s / span for s in states], span, batch_sizes)
