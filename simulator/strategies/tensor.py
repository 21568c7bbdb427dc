"""Tensor (Megatron) parallelism: heads and MLP width sharded, two all-reduces per block.

Every rank runs all ``q`` tokens through ``1/t`` of each weight matrix, then the attention
output and the MLP output are summed across the ``t`` ranks: two ring all-reduces of the
item's ``q × hidden`` activations per block, on the critical path (a cross-attention adds a
third, a joint block's text stream two more over the text tokens: the families' counts). That traffic
(4·S·hs per layer per step, docs/references.md §1) is why TP loses on PCIe.
"""

from __future__ import annotations

from dataclasses import replace

from profiles.costs.cost_model import LayerShape
from profiles.catalog.models import ModelPreset
from simulator.strategies.base import CollectiveSpec, MemoryContext, MemoryTerms, PassWork, PlanFacts, Strategy, \
    TrafficContext

ALL_REDUCES_PER_LAYER = 2


class TensorParallel(Strategy):
    name = "tensor"
    axis = "tensor"
    rank_order = 70
    title = "Tensor parallel"
    runtime_needs = "head_sharding"
    description = "Tensor (Megatron) parallel: heads and MLP width sharded."
    xdit_flag = "--tensor_parallel_degree"
    role = "stage"
    shards_heads = True
    exclusive = True
    runtime_module = "runtime.strategies.tensor"

    def rules(self, degree: int, model: ModelPreset, rows: int) -> list[str]:
        return []  # heads: a cross-axis rule (shards_heads)

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return replace(shape, tensor_shard=shape.tensor_shard * degree)

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        """One blocking all-reduce per row-split Linear (and per head-sharded norm), as pfrun calls
        them: the blocks' own counts where the family states them, else two per layer."""
        if degree < 2:
            return []
        image, text, both, norms = work.tensor_all_reduces or (ALL_REDUCES_PER_LAYER * work.layers, 0, 0, 0)
        row = work.batch * work.dtype_bytes
        sizes = ((image, local_query_tokens * work.hidden * row), (text, work.text_tokens * work.hidden * row),
                 (both, (local_query_tokens + work.text_tokens) * work.hidden * row),
                 (norms, local_query_tokens * row))
        return [CollectiveSpec(self.name, "all_reduce", per * count, count, overlapped=False)
                for count, per in sizes if count and per]

    def buffers(self, ctx: MemoryContext, degree: int) -> MemoryTerms:
        """The all-reduce's buffer ``2·b·q·h`` (its division of weights is its shard's ``tensor_shard``)."""
        return MemoryTerms(receive_buffers=2 * ctx.batch * ctx.query_tokens * ctx.hidden * ctx.dtype_bytes)

    def traffic_bytes(self, degree: int, ctx: TrafficContext) -> float:
        return 4 * ctx.activation_bytes * ctx.model.layers

    def runtime_limits(self, degree: int, facts: PlanFacts, model: ModelPreset) -> str | None:
        """pfrun's tensor loop is diffusers' whole forward: other loop axes are excluded by the rules
        (``exclusive``); a patch split on one rank is refused here."""
        if degree < 2:
            return None
        unsupported = super().runtime_limits(degree, facts, model)
        if unsupported:
            return unsupported
        if facts.patches > 1:
            return (f"degrees.tensor: tensor parallel with patches={facts.patches} is not executed "
                    "(its loop runs the whole image each step; use patches=1)")
        return None
