"""What the search answers changes only when a change means it to.

The search's top 10 on pcie8 and h100-nvlink8 (four model/resolution cases) are recorded
(``tests/planner/record_top10.py``: first before the plug-in redesign, re-recorded for issue
13's cost changes); today's search must rank the same plans, with the same shapes,
placements and latencies.
"""

from __future__ import annotations

import json

import pytest

from tests.planner.record_top10 import CASES, OUT, top10

RECORDED = json.loads(OUT.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("topology, model, px, steps", CASES)
def test_search_top10_is_what_was_recorded(topology, model, px, steps):
    before = RECORDED[f"{topology}/{model}/{px}/{steps}"]
    now = top10(topology, model, px, steps)
    assert [row["label"] for row in now] == [row["label"] for row in before]
    for got, want in zip(now, before):
        assert {k: v for k, v in got.items() if k != "latency_s"} == {k: v for k, v in want.items() if k != "latency_s"}
        assert got["latency_s"] == pytest.approx(want["latency_s"], rel=1e-9)
