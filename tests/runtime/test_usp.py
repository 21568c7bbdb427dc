"""USP (Ulysses × Ring) and the sequence-parallel group that composes them: 4 CPU ranks, gloo.

Attention is exact in both, so USP equals serial to float32 tolerance; each pass records
both kinds of transfer (Ulysses' all-to-alls inside each ring member, Ring's hops between
them) and the bands join in row order (the Ulysses group first)."""

from __future__ import annotations

import pytest

from profiles.catalog.models import load_model
from runtime.attention.sequence_group import sub_band
from runtime.strategies import for_plan
from simulator.runnable import unrunnable_reason

from .helpers import max_diff, plan, run

T = 2


@pytest.mark.parametrize("name", ["pixart-tiny", "sd3-tiny", "flux-tiny"])
def test_usp_reproduces_serial(name):
    serial = run(plan(name, steps=T))
    result = run(plan(name, steps=T, degrees={"ulysses": 2, "ring": 2}))
    assert sorted(result.latents) == [0]
    assert max_diff(result, serial) <= 1e-5 * float(serial.latents[0].abs().max())


def test_usp_trace_has_both_transfers_per_layer_and_no_overlap():
    result = run(plan("dit-tiny", steps=T, degrees={"ulysses": 2, "ring": 2}))
    layers = load_model("dit-tiny").arch.layers
    for rank_events in result.events:
        names = [e["name"] for e in rank_events if e["cat"] == "collective" and e["name"] != "gather prediction"]
        assert names.count("all_to_all") == 2 * layers * T and names.count("ring_pass") == layers * T
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in rank_events
                       if e["cat"] in ("compute", "collective", "embed", "final", "scheduler"))
        assert all(end <= nxt + 1e-3 for (_, end), (nxt, _) in zip(spans, spans[1:]))


def test_usp_is_one_band_loop_and_pipefusion_takes_the_sequence_hook():
    usp = for_plan(plan("pixart-tiny", degrees={"ulysses": 2, "ring": 2}))
    assert usp.loop.axis in ("ring", "ulysses") and getattr(usp.loop, "sequence", False)
    pf = for_plan(plan("pixart-tiny", degrees={"pipefusion": 2, "ring": 2}, patches=2, warmup_steps=1))
    assert pf.loop.axis == "pipefusion"
    assert unrunnable_reason(plan("flux-tiny", degrees={"ulysses": 2, "ring": 2}), load_model("flux-tiny")) is None


def test_sub_bands_tile_the_rows_in_rank_order():
    assert [sub_band(4, 8, 2, i) for i in range(2)] == [(4, 6), (6, 8)]
    assert [sub_band(0, 8, 4, i) for i in range(4)] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(ValueError, match="3 token rows"):
        sub_band(0, 3, 2, 0)
