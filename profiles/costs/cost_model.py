"""The one small interface between costs and the simulator.

The simulator asks one question of compute: *how long does this layer take for this
shape on this device?* A :class:`LayerShape` says which layer and how much of it runs
here; a :class:`CostModel` answers in seconds. Two implementations exist: the analytic
roofline (:mod:`profiles.costs.analytic`, from the GPU data sheet) and the profiled one, which
interpolates measured timings. Communication is priced from the topology's links
(and measured link curves where a profile has them), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

EMBED = "embed"
"""Patch, timestep and text embeddings (run by PipeFusion's first stage)."""
FINAL = "final"
"""Output norm and projection back to latent patches (run by the last stage)."""


@dataclass(frozen=True, order=True)
class LayerShape:
    """One layer's work on one device.

    ``query_tokens`` image tokens pass through the layer's projections and MLP here and
    attend over ``kv_tokens`` image tokens (plus the model's text tokens), e.g. a PipeFusion
    patch of a 4096-token image cut in 8 has ``query_tokens=512, kv_tokens=4096``.
    ``text_query_tokens`` are the text tokens whose projections run here too (joint
    attention models; None means all of the model's text tokens). ``tensor_shard`` divides
    heads and MLP width (tensor parallel).
    """

    kind: str
    query_tokens: int
    kv_tokens: int
    batch: int = 1
    tensor_shard: int = 1
    text_query_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.query_tokens < 0 or self.kv_tokens < 0 or self.batch < 1 or self.tensor_shard < 1:
            raise ValueError(f"invalid layer shape {self}")


@runtime_checkable
class CostModel(Protocol):
    """Seconds of compute for a layer shape on one device."""

    @property
    def name(self) -> str:
        """``analytic:<gpu>`` or ``profile:<file>``, recorded in predictions."""
        ...

    def layer_time_s(self, shape: LayerShape) -> float:
        """Time of one forward of the layer for ``shape`` (must not decrease as work grows)."""
        ...


OPTIONAL_METHODS = {
    "scheduler_step_time_s": "(image_tokens) → one scheduler step on that many tokens' latent rows",
    "pass_overhead_s": "(blocks, batch) → a pass's overhead beyond its separately timed layers",
    "patch_pass_overhead_s": "(blocks, batch, query_tokens) → a PipeFusion patch pass's overhead beyond its "
                             "separately timed layers (absent or None: ``pass_overhead_s``)",
    "first_pass_overhead_s": "(batch) → extra time of a rank's first pass in a fresh process",
    "image_setup_time_s": "() → a rank's set-up of its image before its first step (conditioning inputs, the "
                          "latent draw), paid by every rank at once after the start barrier",
    "vae_decode_time_s": "(height_px, width_px) → the VAE decode of one image in a one-image run",
    "elementwise_time_s": "(nbytes, kernels) → ``kernels`` elementwise kernels moving ``nbytes`` in all "
                          "(Ring's online-softmax merges)",
    "ring_attention_excess_s": "(degree, batch, query_tokens, kv_tokens, hidden) → per attention layer, what Ring's "
                               "per-block partial attentions and merges cost beyond one attention call over all "
                               "keys (one rank's ``query_tokens``; ``hidden``: the width its heads span)",
    "text_encode_time_s": "(prompts) → the pipeline's text encoders over that many prompts (not yet on the timeline)",
}
"""Methods a cost model may add beyond :class:`CostModel`; each returns seconds, or None when
the model cannot tell (the simulator then prices 0 and lists the method in
``Prediction.unpriced``)."""
