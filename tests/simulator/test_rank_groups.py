"""Rank grid arithmetic (the worked example of simulator.rank_groups)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from simulator.rank_groups import AXES, coords, groups, rank_of, world_size


def test_worked_example():
    d = {"cfg": 2, "pipefusion": 2, "ulysses": 2}
    assert groups("ulysses", d) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert groups("pipefusion", d) == [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert groups("cfg", d) == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert coords(5, d)["cfg"] == 1 and coords(5, d)["ulysses"] == 1


@given(st.fixed_dictionaries({a: st.integers(1, 3) for a in AXES}))
def test_groups_partition_the_world(d):
    n = world_size(d)
    for axis in AXES:
        flat = sorted(r for g in groups(axis, d) for r in g)
        assert flat == list(range(n))
    for r in range(n):
        assert rank_of(coords(r, d), d) == r
