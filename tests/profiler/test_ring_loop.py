"""Ring's attention core timed in a loop of its degree's ranks (profiler/ring_loop.py)."""

from __future__ import annotations

import math
import time

import pytest

from profiler import compute as compute_module
from profiler.ring_loop import time_ring_in_loop
from profiles.catalog.models import load_model
from profiles.costs.profile_format import RingAttentionTiming
from profiles.costs.workloads import ComputeSettings


def test_an_in_loop_entry_takes_its_excess_from_the_loop(monkeypatch) -> None:
    asked = {}

    def fake(preset, *, degree, resolution_px, batch, calls, seed):
        asked.update(degree=degree, resolution_px=resolution_px, batch=batch, calls=calls)
        return 7e-4

    monkeypatch.setattr("profiler.ring_loop.time_ring_in_loop", fake)
    entry = RingAttentionTiming(degree=2, batch=2, query_tokens=128, kv_tokens=256, partial_s=1.3e-4, merge_s=1.2e-5,
                                sdpa_s=1.35e-4, excess_s=1.3e-4, repeats=7)
    settings = ComputeSettings(device="cpu", repeats=7, corun_ranks=2)
    out = compute_module.with_ring_in_loop(load_model("pixart-tiny"), entry, 256, settings)
    assert asked == {"degree": 2, "resolution_px": 256, "batch": 2, "calls": 350}
    assert out.in_loop_s == 7e-4 and out.in_loop_ranks == 2
    assert out.excess_s == pytest.approx(7e-4 - 1.35e-4)
    assert (out.partial_s, out.merge_s, out.sdpa_s) == (entry.partial_s, entry.merge_s, entry.sdpa_s)


def test_the_hop_waits_are_not_counted(monkeypatch) -> None:
    """A hop made 20 ms slow (its wait recorded as the exchange records it) leaves the per-call figure
    under those 20 ms; counting the waits would put it above (the ranks are forked: the patch goes with them)."""
    from runtime.attention.ring import RingExchange

    finish = RingExchange.finish

    def slow_finish(self, pending):
        start = time.perf_counter()
        time.sleep(0.02)
        got = finish(self, pending)
        _, end, nbytes = self.intervals[-1]
        self.intervals[-1] = (start, end, nbytes)
        return got

    monkeypatch.setattr(RingExchange, "finish", slow_finish)
    seconds = time_ring_in_loop(load_model("pixart-tiny"), degree=2, resolution_px=256, batch=1, calls=10, seed=0)
    assert math.isfinite(seconds) and 0 < seconds < 0.02


BASE = {"degree": 2, "batch": 1, "query_tokens": 128, "kv_tokens": 256, "partial_s": 1e-4, "merge_s": 1e-5,
        "sdpa_s": 1e-4, "excess_s": 1e-4, "repeats": 3}


def test_the_loop_fields_come_together_and_name_the_degree() -> None:
    assert RingAttentionTiming.model_validate(BASE).in_loop_s is None  # a profile from before the loop
    assert RingAttentionTiming.model_validate({**BASE, "in_loop_s": 5e-4, "in_loop_ranks": 2}).in_loop_ranks == 2
    with pytest.raises(ValueError, match="set together"):
        RingAttentionTiming.model_validate({**BASE, "in_loop_s": 5e-4})
    with pytest.raises(ValueError, match="not the degree"):
        RingAttentionTiming.model_validate({**BASE, "in_loop_s": 5e-4, "in_loop_ranks": 4})
