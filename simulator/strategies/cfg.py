"""Classifier-free guidance: batch 2 on one group, or cond and uncond on two groups (CFG parallel).

Without CFG parallel a CFG model runs every layer on a batch of 2 (cond + uncond). With
``cfg=2`` each of two replica pipelines runs batch 1, and before the scheduler step the
two last stages swap their noise predictions (for PipeFusion, once per patch; otherwise
once per step) so both can apply guidance: one point-to-point exchange each way.
"""

from __future__ import annotations

from profiles.models import ModelPreset
from simulator.plan import ParallelPlan


def batch_per_pass(plan: ParallelPlan, model: ModelPreset) -> int:
    """Images per layer call: 2 with CFG on one group, else 1."""
    return 2 if model.uses_cfg and plan.degrees.cfg == 1 else 1


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
