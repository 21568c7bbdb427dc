"""Classifier-free guidance: batch 2 on one group, or cond and uncond on two groups (CFG parallel).

Without CFG parallel a CFG model runs every layer on a batch of 2 (cond + uncond). With
``cfg=2`` each of two replica pipelines runs batch 1, and before the scheduler step the
two last stages swap their noise predictions (for PipeFusion, once per patch; otherwise
once per step) so both can apply guidance: one point-to-point exchange each way.
"""

from __future__ import annotations

from typing import Mapping

from profiles.costs.cost_model import LayerShape
from profiles.catalog.models import ModelPreset
from simulator.strategies.base import CollectiveSpec, MemoryContext, MemoryTerms, PassWork, Strategy, \
    TrafficContext


class Cfg(Strategy):
    name = "cfg"
    axis = "cfg"
    rank_order = 20
    title = "CFG parallel"
    description = "CFG parallel: cond and uncond halves on two device groups."
    xdit_flag = "--use_cfg_parallel"
    role = "replica"
    max_degree = 2
    runtime_module = "runtime.strategies.cfg"

    def rules(self, degree: int, model: ModelPreset, rows: int) -> list[str]:
        if degree > 1 and not model.uses_cfg:
            return [f"degrees.cfg: cfg({degree}) needs a model that uses classifier-free guidance; "
                    f"{model.name} does not"]
        return []

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return shape  # the batch halves instead: see batch_per_pass

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        return []  # the prediction swap is a point-to-point send of the schedule (simulator.stage_actor)

    def buffers(self, ctx: MemoryContext, degree: int) -> MemoryTerms:
        return MemoryTerms()

    def traffic_bytes(self, degree: int, ctx: TrafficContext) -> float:
        """One prediction per step: an activation scaled to the latent's channels."""
        return ctx.activation_bytes * ctx.model.arch.latent_channels / ctx.model.arch.hidden_size


def batch_per_pass(degrees: Mapping[str, int], model: ModelPreset) -> int:
    """Images per layer call: 2 with CFG on one group, else 1."""
    return 2 if model.uses_cfg and degrees.get("cfg", 1) == 1 else 1


def latent_bytes(model: ModelPreset, tokens: int, dtype_bytes: int) -> int:
    """Bytes of the latent under ``tokens`` image tokens (latent channels × patch area each)."""
    arch = model.arch
    return tokens * arch.patch_size ** 2 * arch.latent_channels * dtype_bytes


def output_values_per_token(model: ModelPreset) -> int:
    """Values the transformer outputs per token (its family's spec knows: patch area × output channels)."""
    return model.spec.output_values_per_token(model.config, model.arch)


def prediction_bytes(model: ModelPreset, tokens: int, dtype_bytes: int) -> int:
    """Bytes of the transformer's output (the noise prediction) for ``tokens`` image tokens."""
    return tokens * output_values_per_token(model) * dtype_bytes
