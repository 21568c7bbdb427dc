"""Request arrivals for the serving simulation: Poisson, bursty (two-state MMPP), or a trace file.

A request is (arrival time, resolution, steps): a trace file may mix shapes; the generated
processes use the one shape being sized. Everything is drawn from one seeded
``random.Random`` so a run is reproducible.

* **Poisson**: exponential gaps at ``rate`` per second (the M in M/D/c).
* **Bursty**: a two-state Markov-modulated Poisson process: a calm state and a burst state
  ``burst_factor`` times busier, switching with mean dwell times; the rates are scaled so
  the long-run mean is still ``rate``. ``burst_share`` is the fraction of time in bursts.
* **Trace**: a CSV (``time_s,resolution,steps``; the last two optional, a header line
  allowed) or JSON Lines file of ``{"time_s": .., "resolution": .., "steps": ..}``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from profiles.errors import InputError


@dataclass(frozen=True)
class Request:
    time_s: float
    resolution: int
    steps: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.resolution, self.steps)


def poisson(rate: float, count: int, shape: tuple[int, int], rng: random.Random) -> list[Request]:
    t, out = 0.0, []
    for _ in range(count):
        t += rng.expovariate(rate)
        out.append(Request(t, *shape))
    return out


MIN_BURST_CYCLES = 5
"""Mean calm + burst cycles a bursty stream spans at least (its percentiles need bursts in it)."""


def bursty(rate: float, count: int, shape: tuple[int, int], rng: random.Random, *, burst_factor: float = 4.0,
           burst_share: float = 0.2, mean_burst_s: float = 30.0) -> list[Request]:
    """Two-state MMPP with long-run mean ``rate``: bursts ``burst_factor``× the calm rate.

    ``count`` is a floor: the stream runs on until it spans :data:`MIN_BURST_CYCLES` mean
    calm + burst cycles, because a window shorter than one cycle mostly sees the calm state
    and so is calmer than Poisson at the same rate."""
    if burst_factor < 1 or not 0 < burst_share < 1 or mean_burst_s <= 0:
        raise InputError("expected burst factor ≥ 1, burst share in (0, 1), burst length > 0", field="--arrivals")
    calm = rate / (1 - burst_share + burst_share * burst_factor)
    rates = (calm, calm * burst_factor)
    dwell = (mean_burst_s * (1 - burst_share) / burst_share, mean_burst_s)
    state, t, out = 0, 0.0, []
    switch = rng.expovariate(1 / dwell[0])
    horizon = MIN_BURST_CYCLES * (dwell[0] + dwell[1])
    while len(out) < count or t < horizon:
        gap = rng.expovariate(rates[state])
        if t + gap < switch:
            t += gap
            out.append(Request(t, *shape))
        else:  # memoryless: redraw the gap from the switch time in the new state
            t = switch
            state = 1 - state
            switch = t + rng.expovariate(1 / dwell[state])
    return out


def read_trace(path: Path, default_shape: tuple[int, int]) -> list[Request]:
    """Requests from a CSV or JSON Lines trace, sorted by time; bad lines are one-line errors."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the request trace ({exc})", file=str(path)) from None
    out: list[Request] = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#") or (n == 1 and line.lower().startswith("time")):
            continue
        try:
            if line.startswith("{"):
                row = json.loads(line)
                fields = [row["time_s"], row.get("resolution", default_shape[0]), row.get("steps", default_shape[1])]
            else:
                cells = [c.strip() for c in line.split(",")]
                fields = [cells[0], *(cells[1:3] + [""] * 2)[:2]]
                fields[1] = fields[1] or default_shape[0]
                fields[2] = fields[2] or default_shape[1]
            req = Request(float(fields[0]), int(fields[1]), int(fields[2]))
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            raise InputError(f"line {n}: expected time_s[,resolution[,steps]] or a JSON object with time_s",
                             file=str(path)) from None
        if req.time_s < 0 or req.resolution < 1 or req.steps < 1:
            raise InputError(f"line {n}: expected time ≥ 0 and positive resolution and steps", file=str(path))
        out.append(req)
    if not out:
        raise InputError("the request trace has no requests", file=str(path))
    return sorted(out, key=lambda r: r.time_s)
