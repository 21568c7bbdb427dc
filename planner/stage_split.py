"""PipeFusion stage splits balanced by profiled cost, not by layer count.

A pipeline runs at the pace of its slowest stage, so the split that minimises the most
expensive stage is the one to run. Blocks are not all alike (Flux's double-stream blocks
carry more weights than its single-stream ones, HunyuanDiT's skip blocks have an extra
projection) and the ends of the pipeline carry extra work: stage 0 also embeds the patch,
the last stage also runs the output projection (the scheduler step that follows it is an
element-wise update of one latent patch, too small to price separately).

Costs are asked of the cost model at the steady-state PipeFusion shape: one patch of
``S/M`` query tokens attending over the whole ``S``-token K/V buffer, with the batch CFG
gives it. The partition is the classic "linear partition" problem; with at most a few
dozen blocks and stages an exact dynamic programme is instant:

    best[k][j] = min over i < j of max(best[k-1][i], cost(i, j))

where ``cost(i, j)`` is blocks ``i..j-1`` plus the stage's extras. Worked example: block
costs ``[1, 1, 1, 1, 1, 1]``, embed 2, final 0, 2 stages → ``[2, 4]`` (stage 0 pays 2 + 2,
stage 1 pays 4), not the even ``[3, 3]`` (5 and 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.costs.cost_model import EMBED, FINAL, CostModel, LayerShape
from profiles.catalog.models import ModelPreset
from simulator.degree_rules import sequence_shards
from simulator.plan import ParallelPlan, patch_rows
from simulator.strategies.cfg import batch_per_pass


@dataclass(frozen=True)
class StageCosts:
    """Per-block costs and the extras of the first and last stage, in seconds."""

    blocks_s: tuple[float, ...]
    first_extra_s: float
    last_extra_s: float

    def stage_costs_s(self, split: list[int]) -> list[float]:
        """Seconds of each stage of ``split`` (blocks per stage)."""
        out, start = [], 0
        for index, count in enumerate(split):
            cost = sum(self.blocks_s[start:start + count])
            if index == 0:
                cost += self.first_extra_s
            if index == len(split) - 1:
                cost += self.last_extra_s
            out.append(cost)
            start += count
        return out


def patch_shape_tokens(plan: ParallelPlan, model: ModelPreset) -> tuple[int, int]:
    """(query tokens of the largest patch, all image tokens) seen by one stage per micro-step."""
    rows, cols = model.token_grid(plan.height_px, plan.width_px)
    largest = max(patch_rows(rows, min(plan.patches, rows))) * cols
    return max(1, largest // sequence_shards(plan.degrees.as_dict())), rows * cols


def stage_costs(plan: ParallelPlan, model: ModelPreset, cost_model: CostModel) -> StageCosts:
    """Block and end-of-pipeline costs at ``plan``'s steady-state patch shape."""
    query, kv = patch_shape_tokens(plan, model)
    batch = batch_per_pass(plan.degrees.as_dict(), model)
    by_kind = {kind: cost_model.layer_time_s(LayerShape(kind, query, kv, batch))
               for kind in set(model.arch.block_kinds())}
    return StageCosts(tuple(by_kind[k] for k in model.arch.block_kinds()),
                      cost_model.layer_time_s(LayerShape(EMBED, query, kv, batch)),
                      cost_model.layer_time_s(LayerShape(FINAL, query, kv, batch)))


def balanced_split(costs: StageCosts, stages: int) -> list[int]:
    """Blocks per stage minimising the most expensive stage (exact; ties: earlier cuts)."""
    blocks = costs.blocks_s
    n = len(blocks)
    if not 1 <= stages <= n:
        raise ValueError(f"cannot cut {n} blocks into {stages} stages")
    prefix = [0.0]
    for c in blocks:
        prefix.append(prefix[-1] + c)

    inf = float("inf")
    # best[k][j]: smallest max-stage cost putting blocks 0..j-1 into stages 0..k-1 (k < stages: not last).
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0.0
    for k in range(1, stages + 1):
        prev, row, cuts = best[k - 1], best[k], cut[k]
        first_extra = costs.first_extra_s if k == 1 else 0.0
        last_extra = costs.last_extra_s if k == stages else 0.0
        for j in range(k, n - (stages - k) + 1):
            top = prefix[j]
            for i in range(k - 1, j):
                before = prev[i]
                if before - 1e-12 >= row[j]:
                    # best[k-1][i] grows with i (costs are not negative; the 1e-15 tie rule moves it
                    # by far less than 1e-12): no later cut can beat the best found.
                    break
                value = top - prefix[i] + first_extra + last_extra
                if before > value:
                    value = before
                if value < row[j] - 1e-15:
                    row[j], cuts[j] = value, i
    split, j = [], n
    for k in range(stages, 0, -1):
        i = cut[k][j]
        split.append(j - i)
        j = i
    return split[::-1]


def choose_split(plan: ParallelPlan, model: ModelPreset, cost_model: CostModel) -> list[int] | None:
    """The balanced split for ``plan`` (None when it has no pipeline)."""
    if plan.degrees.pipeline_stages == 1:
        return None
    return balanced_split(stage_costs(plan, model, cost_model), plan.degrees.pipeline_stages)
