"""Tensor (Megatron) parallelism: heads and MLP width sharded, two all-reduces per block.

Every rank runs all ``q`` tokens through ``1/t`` of each weight matrix, then the attention
output and the MLP output are summed across the ``t`` ranks: two ring all-reduces of the
item's ``q × hidden`` activations per block, on the critical path. That traffic
(4·S·hs per layer per step, REFERENCES §1) is why TP loses on PCIe.
"""

from __future__ import annotations

from dataclasses import replace

from profiles.cost_model import LayerShape
from simulator.strategies.base import CollectiveSpec, PassWork, StageStrategy

ALL_REDUCES_PER_LAYER = 2


class TensorParallel(StageStrategy):
    name = "tensor"
    axis = "tensor"

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return replace(shape, tensor_shard=shape.tensor_shard * degree)

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        if degree < 2:
            return []
        per = local_query_tokens * work.hidden * work.batch * work.dtype_bytes
        count = ALL_REDUCES_PER_LAYER * work.layers
        return [CollectiveSpec("tensor", "all_reduce", per * count, count, overlapped=False)]
