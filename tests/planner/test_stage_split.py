"""Stage splits balanced by cost: exact against brute force, and balanced for flux-dev."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings, strategies as st

from planner.stage_split import StageCosts, balanced_split, choose_split, stage_costs
from profiles.costs.cost_model import LayerShape
from profiles.costs.selection import cost_model_for
from profiles.catalog.models import load_model
from simulator.plan import Degrees, ParallelPlan, even_split


def brute_force_best(costs: StageCosts, stages: int) -> float:
    n = len(costs.blocks_s)
    best = float("inf")
    for cuts in combinations(range(1, n), stages - 1):
        bounds = (0, *cuts, n)
        split = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
        best = min(best, max(costs.stage_costs_s(split)))
    return best


def test_worked_example_stage_zero_carries_the_embedding():
    assert balanced_split(StageCosts((1.0,) * 6, 2.0, 0.0), 2) == [2, 4]
    assert balanced_split(StageCosts((1.0,) * 6, 0.0, 2.0), 2) == [4, 2]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.1, 10), min_size=2, max_size=9), st.floats(0, 5), st.floats(0, 5), st.data())
def test_split_is_optimal(blocks, first, last, data):
    stages = data.draw(st.integers(1, len(blocks)))
    costs = StageCosts(tuple(blocks), first, last)
    split = balanced_split(costs, stages)
    assert len(split) == stages and sum(split) == len(blocks) and min(split) >= 1
    assert max(costs.stage_costs_s(split)) <= brute_force_best(costs, stages) * (1 + 1e-9)


def flux_plan(stages: int) -> ParallelPlan:
    return ParallelPlan(model="flux-dev", height_px=1024, width_px=1024, steps=28,
                        degrees=Degrees(pipefusion=stages), patches=stages)


def test_flux_dev_split_is_within_ten_percent_of_the_mean():
    model = load_model("flux-dev")
    cost_model = cost_model_for(model, "h100-sxm")
    for stages in (2, 3, 4, 6):
        plan = flux_plan(stages)
        split = choose_split(plan, model, cost_model)
        costs = stage_costs(plan, model, cost_model).stage_costs_s(split)
        mean = sum(costs) / stages
        assert max(costs) <= 1.10 * mean, (stages, split, costs)


class DoubleHeavy:
    """A cost model where Flux's double blocks cost twice a single block (as when memory bound)."""

    name = "test:double-heavy"

    def layer_time_s(self, shape: LayerShape) -> float:
        return {"flux_double_block": 2.0, "flux_single_block": 1.0}.get(shape.kind, 0.5)


def test_unequal_blocks_get_unequal_counts_and_beat_the_even_split():
    model = load_model("flux-dev")  # 19 double + 38 single: 76 units of work
    plan = flux_plan(4)
    split = choose_split(plan, model, DoubleHeavy())
    costs = stage_costs(plan, model, DoubleHeavy())
    even = costs.stage_costs_s(even_split(model.layers, 4))
    balanced = costs.stage_costs_s(split)
    assert split[0] < split[-1]  # the double blocks sit in the first stages
    assert max(balanced) < max(even)
    assert max(balanced) <= 1.10 * sum(balanced) / 4


def test_no_pipeline_no_split():
    model = load_model("pixart-alpha")
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=20, degrees=Degrees(ulysses=2))
    assert choose_split(plan, model, cost_model_for(model, "l40")) is None


def full_scan_split(costs: StageCosts, stages: int) -> list[int]:
    """The dynamic programme scanning every cut (what ``balanced_split`` did before it stopped early)."""
    blocks, n, inf = costs.blocks_s, len(costs.blocks_s), float("inf")
    prefix = [0.0]
    for c in blocks:
        prefix.append(prefix[-1] + c)
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0.0
    for k in range(1, stages + 1):
        for j in range(k, n - (stages - k) + 1):
            for i in range(k - 1, j):
                if best[k - 1][i] == inf:
                    continue
                cost = prefix[j] - prefix[i] + (costs.first_extra_s if k == 1 else 0.0) \
                    + (costs.last_extra_s if k == stages else 0.0)
                value = max(best[k - 1][i], cost)
                if value < best[k][j] - 1e-15:
                    best[k][j], cut[k][j] = value, i
    split, j = [], n
    for k in range(stages, 0, -1):
        split.append(j - cut[k][j])
        j = cut[k][j]
    return split[::-1]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0, 2.0, 1e-3, 3.7e-3]) | st.floats(0, 1), min_size=1, max_size=40),
       st.floats(0, 2), st.floats(0, 2), st.data())
def test_stopping_early_gives_the_full_scans_split(blocks, first, last, data):
    """The early stop (no later cut can beat the best found) picks the very split, ties included."""
    costs = StageCosts(tuple(blocks), first, last)
    stages = data.draw(st.integers(1, len(blocks)))
    assert balanced_split(costs, stages) == full_scan_split(costs, stages)
