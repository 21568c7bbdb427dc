"""A diffusers transformer cut into embed → blocks[lo:hi] → final, on whole images or row patches.

PipeFusion needs to run a *range* of blocks on a *band of token rows*. Diffusers'
``forward`` runs everything on the whole image, so each family's adapter
(:mod:`runtime.families`) calls the model's own submodules in the same order ``forward``
does (the model is used, not forked): conditioning once per step, the patch embedding on
the full latent (position embeddings depend on the whole grid, so embedding a patch alone
would be wrong) sliced to the patch's rows, the blocks, and the output layer with
unpatchify for the patch's rows. This class holds the model, its token grid and the K/V
state, and is the same for every family.

Token rows ``[r0, r1)`` of a ``rows × cols`` grid are image tokens ``[r0·cols, r1·cols)``
and latent rows ``[r0·p, r1·p)`` (``p`` = patch size; Flux packs 2×2, so ``p`` = 2).

A band of *tokens* that is not whole rows (xDiT splits a PipeFusion patch across its
sequence-parallel ranks by tokens: a 1-row patch over 2 ranks is half a row each) goes
through :meth:`StagedModel.embed_tokens` and :meth:`StagedModel.run_blocks_tokens`: the
adapters keep their row interface (they are called with the rows that enclose the band)
and :meth:`StagedModel.tokens` answers the band's own tokens while the blocks run, so the
rotary tables, the stale K/V slots and the carried shapes are cut to the band. The output
layer unpatchifies whole rows only: such a band is joined with its group's first.
"""

from __future__ import annotations

from typing import Any

import torch

from profiles.catalog.models import ModelPreset
from runtime.conditioning import Branch
from runtime.families import StepContext, adapter_for, drop_learned_sigma, image_size_px
from runtime.attention.kv_state import KVState

__all__ = ["StagedModel", "StepContext"]


class StagedModel:
    """Embed, block-range and final-layer calls for one model (see module doc)."""

    def __init__(self, preset: ModelPreset, model: Any, rows: int, cols: int, kv: KVState) -> None:
        self.preset, self.model, self.rows, self.cols, self.kv = preset, model, rows, cols, kv
        self.family = preset.family
        self.adapter = adapter_for(preset.family)
        self.p = preset.arch.patch_size
        self.blocks = self.adapter.blocks(model)
        self._band: tuple[int, int] | None = None
        """The token band the blocks run on while :meth:`run_blocks_tokens` runs them (not whole rows)."""

    @property
    def carries_text(self) -> bool:
        """Joint-attention families send the text stream along with each patch."""
        return self.adapter.carries_text

    @property
    def width(self) -> int:
        """Hidden width of the blocks (heads × head dim)."""
        return self.model.config.num_attention_heads * self.model.config.attention_head_dim

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def image_size_px(self) -> tuple[int, int]:
        """Pixel height and width of the whole image."""
        return image_size_px(self.preset, self.rows * self.p, self.cols * self.p)

    def carried_shape(self, batch: int, text_tokens: int, lo: int, tokens: int) -> tuple[int, ...] | None:
        """Shape of what a patch carries into block ``lo`` besides its hidden states."""
        return self.adapter.carried_shape(self, batch, text_tokens, lo, tokens)

    def initial_extra(self, ctx: StepContext) -> torch.Tensor | None:
        return self.adapter.initial_extra(ctx)

    def context(self, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        return self.adapter.context(self, t, branch, dtype)

    def tokens(self, r0: int, r1: int) -> tuple[int, int]:
        """Image tokens of rows [r0, r1); inside :meth:`run_blocks_tokens`, the band's own tokens."""
        if self._band is not None and self.enclosing_rows(*self._band) == (r0, r1):
            return self._band
        return r0 * self.cols, r1 * self.cols

    def enclosing_rows(self, s0: int, s1: int) -> tuple[int, int]:
        """The token rows that hold image tokens [s0, s1)."""
        return s0 // self.cols, -(-s1 // self.cols)

    def whole_rows(self, s0: int, s1: int) -> bool:
        """Whether image tokens [s0, s1) are whole token rows."""
        return s0 % self.cols == 0 and s1 % self.cols == 0

    def embed_tokens(self, latent: torch.Tensor, s0: int, s1: int) -> torch.Tensor:
        """Image tokens [s0, s1), embedded with full-grid positions (the enclosing rows, cut)."""
        r0, r1 = self.enclosing_rows(s0, s1)
        hidden = self.embed(latent, r0, r1)
        if self.whole_rows(s0, s1):
            return hidden
        return hidden[:, s0 - r0 * self.cols: s1 - r0 * self.cols].contiguous()

    def run_blocks_tokens(self, lo: int, hi: int, hidden: torch.Tensor, text: torch.Tensor | None,
                          ctx: StepContext, s0: int, s1: int,
                          full: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`run_blocks` on image tokens [s0, s1), whole rows or not."""
        r0, r1 = self.enclosing_rows(s0, s1)
        self._band = None if self.whole_rows(s0, s1) else (s0, s1)
        try:
            return self.run_blocks(lo, hi, hidden, text, ctx, r0, r1, full)
        finally:
            self._band = None

    def embed(self, latent: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """Image tokens of rows [r0, r1), embedded with full-grid positions."""
        return self.adapter.embed(self, latent, r0, r1)

    def run_blocks(self, lo: int, hi: int, hidden: torch.Tensor, text: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int, full: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Blocks ``[lo, hi)`` on rows [r0, r1); ``full`` passes replace the K/V buffers."""
        self.kv.patch = None if full else self.tokens(r0, r1)
        self.kv.text_tokens = text.shape[1] if text is not None and self.carries_text else 0
        return self.adapter.run_blocks(self, lo, hi, hidden, text, ctx, r0, r1)

    def final(self, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        """Noise prediction (B, C, (r1-r0)·p, W) for the rows, learned sigma dropped."""
        return drop_learned_sigma(self.preset, self.adapter.final(self, hidden, ctx, r0, r1))
