"""The flow table re-times rows with the scalar arithmetic it replaced, bit for bit, and keeps rows through growth."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from simulator.flow_table import FlowTable


def scalar_retime(flow: dict, shares: list[float], now: float) -> float | None:
    """The per-flow code the table replaced (network.py before 2026-12-03): the new end, or None when
    the rate is unchanged."""
    rate = flow["speed"] * min(shares[i] for i in flow["links"])
    if rate == flow["rate"]:
        return None
    elapsed = now - flow["updated"]
    latency_left, remaining = flow["latency_left"], flow["remaining"]
    if elapsed > 0:
        waiting = latency_left if latency_left < elapsed else elapsed
        latency_left = latency_left - waiting
        remaining = remaining - flow["rate"] * (elapsed - waiting)
        remaining = remaining if remaining > 0.0 else 0.0
    return now + (latency_left + remaining / rate)


positive = st.floats(min_value=1e-6, max_value=1e10, allow_nan=False)
flow = st.fixed_dictionaries({
    "remaining": st.floats(min_value=0.0, max_value=1e9), "latency_left": st.floats(min_value=0.0, max_value=1e-3),
    "speed": st.floats(min_value=0.1, max_value=1.0), "rate": st.one_of(st.just(0.0), positive),
    # how long before now it was last updated: not at all, inside its latency, or past it
    "ago": st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=2e-3)),
    "links": st.lists(st.integers(0, 5), min_size=1, max_size=5, unique=True)})


@settings(max_examples=200, deadline=None)
@given(flows=st.lists(flow, min_size=1, max_size=12), link_rates=st.lists(positive, min_size=6, max_size=6),
       users=st.lists(st.integers(1, 300), min_size=6, max_size=6), now=st.floats(min_value=0.0, max_value=50.0))
def test_a_vectorised_retiming_is_the_scalar_one_bit_for_bit(flows, link_rates, users, now):
    table = FlowTable(capacity=2, width=2)  # both grow on the way
    columns = [table.new_link(rate) for rate in link_rates]
    for column, rate, n in zip(columns, link_rates, users):
        table.shares[column] = rate / n
    shares = {column: float(table.shares[column]) for column in columns}
    rows = []
    flows = [{**f, "updated": max(now - f["ago"], 0.0)} for f in flows]
    for f in flows:
        links = np.array([[columns[i] for i in f["links"]]], dtype=np.intp)
        rows += table.add(f["remaining"], np.array([f["latency_left"]]), links, np.array([f["speed"]]),
                          f["rate"], f["updated"]).tolist()
    table.place(np.array(rows), np.full(len(rows), 7.0), 0)
    expected = [scalar_retime({**f, "links": [columns[i] for i in f["links"]]}, shares, now) for f in flows]
    changed = table.retime(np.array(rows[::-1]), now, 100)
    assert changed == sum(e is not None for e in expected)
    order = 100
    for row, want in zip(rows[::-1], expected[::-1]):
        if want is None:
            assert table.end[row] == 7.0  # an unchanged rate keeps its end
        else:
            order += 1
            assert float(table.end[row]).hex() == want.hex()
            assert table.order[row] == order  # orders follow the order the rows were given in


def test_rows_survive_growth_and_due_pops_in_end_then_order():
    table = FlowTable(capacity=1, width=1)
    a, b = table.new_link(10.0), table.new_link(20.0)
    first = table.add(5.0, np.array([0.0]), np.array([[a]], dtype=np.intp), np.array([1.0]), 0.0, 0.0)
    more = table.add(5.0, np.zeros(3), np.array([[a, b]] * 3, dtype=np.intp), np.ones(3), 0.0, 0.0)
    assert table.live == 4 and table.links.shape[1] == 2
    assert table.links[first[0]].tolist() == [a, 0]  # padded with NO_LINK after widening
    table.place(np.concatenate([first, more]), np.array([2.0, 1.0, 2.0, 3.0]), 0)
    assert table.next_end() == 1.0
    assert table.due(2.0) == [more[0], first[0], more[1]]  # by end, then by the order they were placed in
    table.release([int(more[0])])
    assert table.live == 3 and table.due(1.5) == []
