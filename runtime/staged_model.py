"""A diffusers transformer cut into embed → blocks[lo:hi] → final, on whole images or row patches.

PipeFusion needs to run a *range* of blocks on a *band of token rows*. Diffusers'
``forward`` runs everything on the whole image, so each family gets a small adapter that
calls the model's own submodules in the same order ``forward`` does (the model is used,
not forked): conditioning once per step, the patch embedding on the full latent (position
embeddings depend on the whole grid, so embedding a patch alone would be wrong) sliced to
the patch's rows, the blocks, and the output layer with unpatchify for the patch's rows.

Token rows ``[r0, r1)`` of a ``rows × cols`` grid are image tokens ``[r0·cols, r1·cols)``
and latent rows ``[r0·p, r1·p)`` (``p`` = patch size; Flux packs 2×2, so ``p`` = 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from profiles.model_build import transformer_blocks
from profiles.model_inputs import (FLUX_GUIDANCE, Branch, flux_image_ids, hunyuan_meta, hunyuan_rotary,
                                   image_size_px, model_timestep, pack_flux, pixart_added_conditions, unpack_flux)
from profiles.models import ModelPreset
from runtime.stale_kv import KVState


@dataclass
class StepContext:
    """What every block of one step shares (timestep embedding, projected text, rotary)."""

    batch: int
    text: torch.Tensor | None = None
    """The text stream entering block 0 (joint families) or the cross-attention context (PixArt)."""
    text_mask: torch.Tensor | None = None
    temb: Any = None
    temb_extra: Any = None
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    class_labels: torch.Tensor | None = None


class StagedModel:
    """Embed, block-range and final-layer calls for one family (see module doc)."""

    def __init__(self, preset: ModelPreset, model: Any, rows: int, cols: int, kv: KVState) -> None:
        self.preset, self.model, self.rows, self.cols, self.kv = preset, model, rows, cols, kv
        self.family = preset.family
        self.p = preset.arch.patch_size
        self.blocks = transformer_blocks(model)
        if self.family not in ("pixart", "sd3", "flux", "dit", "hunyuan"):
            raise NotImplementedError(f"no staged adapter for family {self.family!r}")

    @property
    def carries_text(self) -> bool:
        """Joint-attention families send the text stream along with each patch."""
        return self.family in ("sd3", "flux")

    def skips_entering(self, lo: int) -> int:
        """HunyuanDiT long skips alive before block ``lo``: blocks ``i < L/2 - 1`` push their
        output, blocks ``i > L/2`` pop the output of block ``L - 1 - i``. (L=6: blocks 0, 1 push;
        4 pops block 1's, 5 pops block 0's; entering block 4 two skips are alive.)"""
        half = len(self.blocks) // 2
        return min(lo, half - 1) - max(0, lo - half - 1)

    def carried_shape(self, batch: int, text_tokens: int, lo: int, tokens: int) -> tuple[int, ...] | None:
        """Shape of what a patch carries into block ``lo`` besides its hidden states."""
        width = self.model.config.num_attention_heads * self.model.config.attention_head_dim
        if self.carries_text:
            return (batch, text_tokens, width)
        if self.family == "hunyuan":
            k = self.skips_entering(lo)
            return (k, batch, tokens, width) if k else None
        return None

    def initial_extra(self, ctx: StepContext) -> torch.Tensor | None:
        return ctx.text if self.carries_text else None

    def context(self, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        m, fam = self.model, self.family
        batch = branch.prompt_embeds.shape[0] if branch.prompt_embeds is not None else branch.class_label.shape[0]
        dev = next(m.parameters()).device
        ts = model_timestep(self.preset, t.to(dev), batch, dtype)
        ctx = StepContext(batch=batch)
        height_px, width_px = image_size_px(self.preset, self.rows * self.p, self.cols * self.p)
        if fam == "pixart":
            sizes = pixart_added_conditions(self.preset, height_px, width_px, batch, dev, dtype)
            ctx.temb, ctx.temb_extra = m.adaln_single(ts, sizes, batch_size=batch, hidden_dtype=dtype)
            ctx.text = m.caption_projection(branch.prompt_embeds.to(dtype)).view(batch, -1, m.inner_dim)
            if branch.prompt_mask is not None:
                ctx.text_mask = ((1 - branch.prompt_mask.to(dtype)) * -10000.0).unsqueeze(1)
        elif fam == "dit":
            ctx.temb, ctx.class_labels = ts, branch.class_label
        elif fam == "sd3":
            ctx.temb = m.time_text_embed(ts, branch.pooled_embeds.to(dtype))
            ctx.text = m.context_embedder(branch.prompt_embeds.to(dtype))
        elif fam == "hunyuan":
            meta, style = hunyuan_meta(self.preset, height_px, width_px, batch, dev, dtype)
            ctx.temb = m.time_extra_emb(ts, branch.prompt_embeds_2.to(dtype), meta, style, hidden_dtype=ts.dtype)
            t5 = branch.prompt_embeds_2.to(dtype)
            t5 = m.text_embedder(t5.view(-1, t5.shape[-1])).view(batch, t5.shape[1], -1)
            text = torch.cat([branch.prompt_embeds.to(dtype), t5], dim=1)
            mask = torch.cat([branch.prompt_mask, branch.prompt_mask_2], dim=-1).unsqueeze(2).bool()
            ctx.text = torch.where(mask, text, m.text_embedding_padding)
            ctx.rotary = tuple(x.to(dev) for x in hunyuan_rotary(self.preset, self.rows, self.cols))
        elif fam == "flux":
            ts = ts * 1000
            pooled = branch.pooled_embeds.to(dtype)
            if m.config.guidance_embeds:
                guidance = torch.full((batch,), FLUX_GUIDANCE, dtype=dtype, device=dev) * 1000
                ctx.temb = m.time_text_embed(ts, guidance, pooled)
            else:
                ctx.temb = m.time_text_embed(ts, pooled)
            ctx.text = m.context_embedder(branch.prompt_embeds.to(dtype))
            text_ids = torch.zeros(ctx.text.shape[1], 3)
            ids = torch.cat([text_ids, flux_image_ids(self.rows, self.cols)], 0).to(dev)
            ctx.rotary = m.pos_embed(ids)
        return ctx

    def tokens(self, r0: int, r1: int) -> tuple[int, int]:
        return r0 * self.cols, r1 * self.cols

    def embed(self, latent: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """Image tokens of rows [r0, r1), embedded with full-grid positions."""
        if self.family == "flux":  # a Linear per packed token: embedding the rows alone is exact
            return self.model.x_embedder(pack_flux(latent[:, :, r0 * self.p: r1 * self.p]))
        s0, s1 = self.tokens(r0, r1)
        return self.model.pos_embed(latent)[:, s0:s1].contiguous()

    def run_blocks(self, lo: int, hi: int, hidden: torch.Tensor, text: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int, full: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Blocks ``[lo, hi)`` on rows [r0, r1); ``full`` passes replace the K/V buffers."""
        self.kv.patch = None if full else self.tokens(r0, r1)
        self.kv.text_tokens = text.shape[1] if text is not None and self.carries_text else 0
        rotary = None
        if self.family == "flux":
            nt = ctx.text.shape[1]
            s0, s1 = self.tokens(r0, r1)
            cos, sin = ctx.rotary
            rotary = (torch.cat([cos[:nt], cos[nt + s0: nt + s1]]), torch.cat([sin[:nt], sin[nt + s0: nt + s1]]))
        for block in self.blocks[lo:hi]:
            if self.family == "pixart":
                hidden = block(hidden, attention_mask=None, encoder_hidden_states=ctx.text,
                               encoder_attention_mask=ctx.text_mask, timestep=ctx.temb,
                               cross_attention_kwargs=None, class_labels=None)
            elif self.family == "dit":
                hidden = block(hidden, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                               timestep=ctx.temb, cross_attention_kwargs=None, class_labels=ctx.class_labels)
            elif self.family == "sd3":
                text, hidden = block(hidden_states=hidden, encoder_hidden_states=text, temb=ctx.temb,
                                     joint_attention_kwargs=None)
            elif self.family == "flux":
                text, hidden = block(hidden_states=hidden, encoder_hidden_states=text, temb=ctx.temb,
                                     image_rotary_emb=rotary, joint_attention_kwargs=None)
        if self.family == "hunyuan":
            return self._hunyuan_blocks(lo, hi, hidden, text, ctx, r0, r1)
        return hidden, text

    def _hunyuan_blocks(self, lo: int, hi: int, hidden: torch.Tensor, skips_in: torch.Tensor | None,
                        ctx: StepContext, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """HunyuanDiT blocks; the long-skip stack travels with the patch as one (k, B, n, D) tensor."""
        half = len(self.blocks) // 2
        s0, s1 = self.tokens(r0, r1)
        cos, sin = ctx.rotary
        rotary = (cos[s0:s1], sin[s0:s1])
        skips = list(skips_in.unbind(0)) if skips_in is not None else []
        for i in range(lo, hi):
            skip = skips.pop() if i > half else None
            hidden = self.blocks[i](hidden, temb=ctx.temb, encoder_hidden_states=ctx.text,
                                    image_rotary_emb=rotary, skip=skip)
            if i < half - 1:
                skips.append(hidden)
        return hidden, (torch.stack(skips) if skips else None)

    def final(self, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        """Noise prediction (B, C, (r1-r0)·p, W) for the rows, learned sigma dropped."""
        m, fam, p = self.model, self.family, self.p
        n_rows = r1 - r0
        if fam == "flux":
            out = unpack_flux(m.proj_out(m.norm_out(hidden, ctx.temb)), n_rows, self.cols)
        else:
            if fam == "pixart":
                shift, scale = (m.scale_shift_table[None] + ctx.temb_extra[:, None]).chunk(2, dim=1)
                hidden = m.proj_out(m.norm_out(hidden) * (1 + scale) + shift)
            elif fam == "dit":
                cond = self.blocks[0].norm1.emb(ctx.temb, ctx.class_labels, hidden_dtype=hidden.dtype)
                shift, scale = m.proj_out_1(F.silu(cond)).chunk(2, dim=1)
                hidden = m.proj_out_2(m.norm_out(hidden) * (1 + scale[:, None]) + shift[:, None])
            elif fam == "hunyuan":
                hidden = m.proj_out(m.norm_out(hidden, ctx.temb.to(torch.float32)))
            else:
                hidden = m.proj_out(m.norm_out(hidden, ctx.temb))
            c_out = hidden.shape[-1] // (p * p)
            hidden = hidden.reshape(-1, n_rows, self.cols, p, p, c_out)
            out = torch.einsum("nhwpqc->nchpwq", hidden).reshape(-1, c_out, n_rows * p, self.cols * p)
        c = self.preset.arch.latent_channels
        return out[:, :c] if out.shape[1] > c else out
