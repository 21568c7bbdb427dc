"""Wan 2.1 / 2.2 (``WanTransformer3DModel``): video tokens, RMS-norm self-attention, cross-attention to umT5.

The runtime keeps a video latent as one (B, C, F·H, W) tensor, its latent frames stacked
along the rows (the catalog's token rows, :meth:`~profiles.catalog.models.ModelPreset.latent_size`),
and views it as (B, C, F, H, W) for the model's own forward: the memory is the same, so a
latent drawn as ``randn(1, C, F·H, W)`` is the one ``WanPipeline`` draws as
``randn(1, C, F, H, W)``. A band of token rows is whole latent rows of one or several
frames (the temporal patch is 1 and a token row never straddles two frames), so the
``1×2×2`` Conv3d patch embedding of a band alone is exact; its 3-D rotary positions are
rows of the full table. ``attn1`` gets a stale-K/V processor (PipeFusion; DistriFusion swaps
its buffer) or a sequence-parallel one (Ulysses, Ring, USP) of Wan's own kind (queries and
keys RMS-normed across heads before the head split, per token; rotary on interleaved pairs);
``attn2`` (text) keeps diffusers' processor. The timestep goes through
``condition_embedder`` once per step (its ``6h`` projection modulates every block).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from profiles.catalog.models import ModelPreset
from runtime.attention.kv_state import KVState
from runtime.conditioning import Branch
from runtime.families.base import (FamilyAdapter, ProcessorKind, StagedView, StepContext, TensorPlan, batch_of,
                                   default_tensor_plan, unpatchify)


def video_view(preset: ModelPreset, latent: torch.Tensor) -> torch.Tensor:
    """(B, C, F·H, W) → (B, C, F, H, W) with the preset's latent frames (a view, no copy)."""
    b, c, rows, w = latent.shape
    frames = preset.latent_frames()
    return latent.reshape(b, c, frames, rows // frames, w)


def wan_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on interleaved pairs of (B, N, heads, d), as ``WanAttnProcessor`` applies it."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


def wan_qkv(attn: Any, hidden_states: torch.Tensor,
            rotary_emb: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Wan's self-attention Q/K/V as (B, N, heads, d): queries and keys RMS-normed across all
    heads of each token (per token, so a band or a token share normalises on its own), then
    rotary on the tokens' own positions. The stale and sequence-parallel processors differ only after this."""
    q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
    q, k = attn.norm_q(q), attn.norm_k(k)
    q, k, v = (x.unflatten(2, (attn.heads, -1)) for x in (q, k, v))
    if rotary_emb is not None:
        q, k = wan_rotary(q, *rotary_emb), wan_rotary(k, *rotary_emb)
    return q, k, v


class StaleWanSelfAttnProcessor:
    """``WanAttnProcessor`` for self-attention with the whole clip's K/V in a buffer (after rotary)."""

    def __init__(self, state: KVState) -> None:
        from runtime.attention.stale_kv import KVBuffer

        self.kv = KVBuffer(state, seq_dim=1)

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, rotary_emb: Any = None, **_: Any) -> torch.Tensor:
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        q, k, v = wan_qkv(attn, hidden_states, rotary_emb)
        k, v = self.kv.update(k, v)
        out = dispatch_attention_fn(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
        out = out.flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


class SequenceWanSelfAttnProcessor:
    """``WanAttnProcessor`` for self-attention around a sequence-parallel core
    (:mod:`runtime.attention.sequence`: Ulysses, Ring, USP; with PipeFusion, the core holds the
    stale buffer): this rank's tokens' Q/K/V in, their attention output over the whole clip out."""

    def __init__(self, core: Any, state: KVState) -> None:
        self.core = core

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, rotary_emb: Any = None, **_: Any) -> torch.Tensor:
        q, k, v = wan_qkv(attn, hidden_states, rotary_emb)
        out, _ = self.core.attend(*(x.transpose(1, 2) for x in (q, k, v)), None, False)
        out = out.transpose(1, 2).flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


class WanAdapter(FamilyAdapter):
    name = "wan"
    processor_kinds = frozenset({"wan"})

    def blocks(self, model: Any) -> list[Any]:
        return list(model.blocks)

    def attention_sites(self, block: Any) -> list[tuple[ProcessorKind, Any]]:
        return [("wan", block.attn1)]

    def own_stale_processors(self) -> Mapping[str, type]:
        return {"wan": StaleWanSelfAttnProcessor}

    def own_sequence_processors(self) -> Mapping[str, type]:
        return {"wan": SequenceWanSelfAttnProcessor}

    def tensor_plan(self, block: Any) -> TensorPlan:
        """The default split, plus ``norm_q`` / ``norm_k`` (and I2V's ``norm_added_k``) of both
        attentions: RMS norms across all heads (one mean of squares over the full width), so a
        rank holding 1/t of the heads normalises with the group's all-reduced sum of squares."""
        plan = default_tensor_plan(block)
        for attn in (block.attn1, block.attn2):
            plan.norms += [(attn, n) for n in ("norm_q", "norm_k", "norm_added_k")
                           if isinstance(getattr(attn, n, None), torch.nn.RMSNorm)]
        return plan

    def transformer_kwargs(self, preset: ModelPreset, latent: torch.Tensor, t: torch.Tensor,
                           branch: Branch) -> dict[str, Any]:
        dtype, dev = latent.dtype, latent.device
        return {"hidden_states": video_view(preset, latent), "timestep": self.timestep(t.to(dev), latent.shape[0], dtype),
                "encoder_hidden_states": branch.prompt_embeds.to(device=dev, dtype=dtype), "return_dict": False}

    def noise_from_output(self, preset: ModelPreset, out: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """(B, C, F, H, W) → the runtime's (B, C, F·H, W)."""
        b, c, f, h, w = out.shape
        return out.reshape(b, c, f * h, w)

    def context(self, staged: StagedView, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        m, batch, dev = staged.model, batch_of(branch), staged.device
        ts = self.timestep(t.to(dev), batch, dtype)
        temb, proj, text, _ = m.condition_embedder(ts, branch.prompt_embeds.to(device=dev, dtype=dtype), None,
                                                   timestep_seq_len=None)
        frames = staged.preset.latent_frames()
        p = staged.p
        shape = torch.empty(1, 0, frames, staged.rows * p // frames, staged.cols * p, device="meta")
        return StepContext(batch=batch, text=text, temb=temb, temb_extra=proj.unflatten(1, (6, -1)),
                           rotary=m.rope(shape))

    def embed(self, staged: StagedView, latent: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        band = latent[:, :, r0 * staged.p: r1 * staged.p].unsqueeze(2)
        return staged.model.patch_embedding(band).flatten(2).transpose(1, 2).contiguous()

    def run_blocks(self, staged: StagedView, lo: int, hi: int, hidden: torch.Tensor, extra: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0, s1 = staged.tokens(r0, r1)
        cos, sin = ctx.rotary
        rotary = (cos[:, s0:s1], sin[:, s0:s1])
        for block in staged.blocks[lo:hi]:
            hidden = block(hidden, ctx.text, ctx.temb_extra, rotary)
        return hidden, extra

    def final(self, staged: StagedView, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        m = staged.model
        shift, scale = (m.scale_shift_table.to(ctx.temb.device) + ctx.temb.unsqueeze(1)).chunk(2, dim=1)
        hidden = (m.norm_out(hidden.float()) * (1 + scale) + shift).type_as(hidden)
        return unpatchify(m.proj_out(hidden), r1 - r0, staged.cols, staged.p)
