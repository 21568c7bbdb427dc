"""The fair-share network's transfers in flight, as rows of numpy arrays, re-timed many at once.

Why: on clusters of hundreds of GPUs a NIC carries hundreds of transfers at once (a Ulysses
all-to-all across nodes, several stage groups on one NIC), so each start or end re-times
hundreds of neighbours; one Python object and one heap entry per re-timing made that the
search's whole cost (pixart-alpha and flux-dev on 512 L40s, docs/benchmarks.md round 10).
Here a flow is a row (a *slot*), its links are columns of link indices, and a re-timing is
a few array operations over every neighbour together. The next completion is the smallest
``end`` of a live row (ties: the lower ``order``, the re-timing that came first), which is
what the heap gave.

Exactness: every row takes the same IEEE float64 operations, in the same order, as the
scalar code did per flow (numpy's elementwise ``+ - * /`` round exactly as Python floats do),
so every completion time is the same to the last bit (tests/simulator/test_network_reference.py,
the recorded top 10, the steady-state tests).
"""

from __future__ import annotations

import numpy as np

NO_LINK = 0
"""Link index of the padding column: its share is infinite, so it is never a flow's smallest."""


class FlowTable:
    """Rows of flows in flight: bytes and latency left, rate, when last brought up to date, route speed,
    completion time and its tie-break order; ``links`` holds each row's link indices (padded with
    :data:`NO_LINK`); ``shares`` each link's ``bytes_per_s / users``. A free row has ``end = inf``."""

    def __init__(self, capacity: int = 256, width: int = 4) -> None:
        self.shares = np.full(64, np.inf)
        self.links_used = 1  # index 0 is NO_LINK
        self._alloc(capacity, width)
        self.free: list[int] = list(range(capacity - 1, -1, -1))
        self.live = 0

    def _alloc(self, capacity: int, width: int) -> None:
        self.remaining = np.zeros(capacity)
        self.latency_left = np.zeros(capacity)
        self.rate = np.zeros(capacity)
        self.updated = np.zeros(capacity)
        self.speed = np.ones(capacity)
        self.end = np.full(capacity, np.inf)
        self.order = np.zeros(capacity, dtype=np.int64)
        self.links = np.zeros((capacity, width), dtype=np.intp)

    def new_link(self, bytes_per_s: float) -> int:
        """A column for one more link, its share its whole bandwidth."""
        index = self.links_used
        if index == len(self.shares):
            self.shares = np.concatenate([self.shares, np.full(len(self.shares), np.inf)])
        self.shares[index] = bytes_per_s
        self.links_used += 1
        return index

    def _grow(self, capacity: int, width: int) -> None:
        old = (self.remaining, self.latency_left, self.rate, self.updated, self.speed, self.end, self.order, self.links)
        n, w = len(old[0]), old[7].shape[1]
        self._alloc(capacity, width)
        for new, was in zip((self.remaining, self.latency_left, self.rate, self.updated, self.speed, self.end,
                             self.order), old[:7]):
            new[:n] = was
        self.links[:n, :w] = old[7]
        self.free = list(range(capacity - 1, n - 1, -1)) + self.free

    def add(self, remaining: np.ndarray | float, latency_left: np.ndarray, links: np.ndarray,
            speed: np.ndarray, rate: np.ndarray | float, updated: np.ndarray | float) -> np.ndarray:
        """New rows, one per row of ``links`` (link indices, padded with :data:`NO_LINK`); their ``end`` is
        set by the caller's re-timing or :meth:`place`. Returns the rows' slots, in order."""
        count, width = links.shape
        if len(self.free) < count or width > self.links.shape[1]:
            capacity = len(self.end)
            while capacity - self.live < count:
                capacity *= 2
            self._grow(capacity, max(width, self.links.shape[1]))
        slots = np.array(self.free[-1:-count - 1:-1], dtype=np.intp)
        del self.free[len(self.free) - count:]
        self.remaining[slots] = remaining
        self.latency_left[slots] = latency_left
        self.rate[slots] = rate
        self.updated[slots] = updated
        self.speed[slots] = speed
        self.links[slots] = NO_LINK
        self.links[slots, :width] = links
        self.live += count
        return slots

    def place(self, slots: np.ndarray, end: np.ndarray, order: int) -> None:
        """Set the rows' ends, with orders ``order + 1, …`` in the order given."""
        self.end[slots] = end
        self.order[slots] = np.arange(order + 1, order + 1 + len(slots))

    def release(self, slots: list[int]) -> None:
        self.end[slots] = np.inf
        self.free.extend(slots)
        self.live -= len(slots)

    def retime(self, slots: np.ndarray, now: float, order: int) -> int:
        """Give each row of ``slots`` (in this order) its rate under today's shares; rows whose rate changed
        are brought up to ``now`` at their old rate and get a new end, with orders ``order + 1, …`` in the
        order given. Returns how many changed (the caller's order counter moves on by that much).

        The scalar code it replaces, per flow: ``rate = speed · min(shares)``; unchanged → nothing;
        else ``waiting = min(latency_left, elapsed)``, ``latency_left −= waiting``,
        ``remaining = max(remaining − old_rate · (elapsed − waiting), 0)`` when ``elapsed > 0``, and
        ``end = now + (latency_left + remaining / rate)``."""
        rate = self.speed[slots] * self.shares[self.links[slots]].min(axis=1)
        changed = rate != self.rate[slots]
        if not changed.all():
            slots, rate = slots[changed], rate[changed]
        count = len(slots)
        if not count:
            return 0
        latency_left, remaining = self.latency_left[slots], self.remaining[slots]
        elapsed = now - self.updated[slots]
        moved = elapsed > 0
        if moved.any():
            waiting = np.where(latency_left < elapsed, latency_left, elapsed)
            new_latency = latency_left - waiting
            new_remaining = remaining - self.rate[slots] * (elapsed - waiting)
            new_remaining = np.where(new_remaining > 0.0, new_remaining, 0.0)
            latency_left = np.where(moved, new_latency, latency_left)
            remaining = np.where(moved, new_remaining, remaining)
            self.latency_left[slots] = latency_left
            self.remaining[slots] = remaining
        self.updated[slots] = now
        self.rate[slots] = rate
        self.end[slots] = now + (latency_left + remaining / rate)
        self.order[slots] = np.arange(order + 1, order + 1 + count)
        return count

    def next_end(self) -> float:
        """The earliest completion of a live row (inf: none)."""
        return float(self.end.min()) if self.live else float("inf")

    def due(self, now: float) -> list[int]:
        """Live rows ending at or before ``now``, by (end, order): the heap's pop order."""
        if not self.live:
            return []
        found = np.flatnonzero(self.end <= now)
        if len(found) > 1:
            found = found[np.lexsort((self.order[found], self.end[found]))]
        return found.tolist()
