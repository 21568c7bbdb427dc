"""HunyuanVideo (``HunyuanVideoTransformer3DModel``): dual-stream, then single-stream blocks over [video; text].

The runtime keeps the video latent as (B, C, F·H, W), latent frames stacked along the rows,
and views it as (B, C, F, H, W) for the model's own forward (:func:`runtime.families.wan.video_view`;
the same memory, so ``randn(1, C, F·H, W)`` is the latent ``HunyuanVideoPipeline.prepare_latents``
draws as ``randn(1, C, F, H, W)``). A band of token rows is whole latent rows of one or several
frames (temporal patch 1), so the ``1×2×2`` Conv3d patch embedding of a band alone is exact;
its rotary positions are rows of the full (F·H·W) table. Unlike Flux, the text comes *after*
the video in every attention ([video; text]) and is masked: the pipeline's prompt mask (here:
all ones for the seeded stand-in prompts) becomes a key mask that keeps every video key and
the prompt's valid tokens, as the model's forward builds it. The token refiner
(``context_embedder``), the timestep, the pooled CLIP prompt and the embedded guidance
(``guidance_scale × 1000``, as the pipeline passes it) are computed once per step.
Preparation is the pipeline's (its ``linspace(1, 0, T + 1)[:-1]`` sigmas, guidance 6.0, the
same Gaussian draw) through :class:`~runtime.pipeline_prep.StandInPipeline`: the real
pipeline's ``prepare_latents`` takes a frame count the adapter interface does not pass, and
its prompt encoding needs a Llama and a CLIP text model.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from profiles.catalog.models import ModelPreset
from runtime.attention.kv_state import KVState
from runtime.conditioning import Branch
from runtime.families.base import FamilyAdapter, ProcessorKind, StagedView, StepContext, TensorPlan, batch_of
from runtime.families.flux import FluxAdapter
from runtime.families.wan import video_view

HUNYUAN_VIDEO_GUIDANCE = 6.0
"""``HunyuanVideoPipeline.__call__``'s default ``guidance_scale`` (embedded, no CFG)."""


def embedded_guidance(branch: Branch, batch: int, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """``guidance_scale × 1000`` per batch item, as the pipeline builds it (the branch's value, else 6.0)."""
    scale = float(branch.guidance.reshape(-1)[0]) if branch.guidance is not None else HUNYUAN_VIDEO_GUIDANCE
    return torch.tensor([scale] * batch, dtype=dtype, device=device) * 1000.0


def prompt_mask(branch: Branch, dtype: torch.dtype, device: Any) -> torch.Tensor:
    """The prompt mask as the pipeline passes it (transformer dtype); all ones for stand-in prompts."""
    if branch.prompt_mask is not None:
        return branch.prompt_mask.to(device=device, dtype=dtype)
    return torch.ones(branch.prompt_embeds.shape[:2], dtype=dtype, device=device)


class StaleHunyuanVideoAttnProcessor:
    """``HunyuanVideoAttnProcessor2_0`` with the whole clip's video K/V (after rotary) in a buffer.

    ``attention_mask`` is the (B, text) bool mask of valid prompt tokens; the key mask is every
    video key, then those. Dual-stream blocks project the text with ``add_*_proj``; single-stream
    blocks run one [video; text] projection and return both parts (no ``to_out``).
    """

    def __init__(self, state: KVState) -> None:
        from runtime.attention.stale_kv import KVBuffer

        self.kv = KVBuffer(state, seq_dim=1)

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 attention_mask: torch.Tensor | None = None, image_rotary_emb: Any = None,
                 **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        from diffusers.models.attention_dispatch import dispatch_attention_fn
        from diffusers.models.embeddings import apply_rotary_emb

        n_text = encoder_hidden_states.shape[1]
        single = attn.add_q_proj is None
        x = torch.cat([hidden_states, encoder_hidden_states], dim=1) if single else hidden_states
        q, k, v = (proj(x).unflatten(2, (attn.heads, -1)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if single:
            (q, tq), (k, tk), (v, tv) = ((t[:, :-n_text], t[:, -n_text:]) for t in (q, k, v))
            if image_rotary_emb is not None:
                q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
                k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
        else:
            if image_rotary_emb is not None:
                q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
                k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
            tq, tk, tv = (proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
                          for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
            if attn.norm_added_q is not None:
                tq = attn.norm_added_q(tq)
            if attn.norm_added_k is not None:
                tk = attn.norm_added_k(tk)
        k, v = self.kv.update(k, v)
        mask = None
        if attention_mask is not None:
            keep = torch.ones(k.shape[0], k.shape[1], dtype=torch.bool, device=k.device)
            mask = torch.cat([keep, attention_mask.to(torch.bool)], dim=1)[:, None, None, :]
        out = dispatch_attention_fn(torch.cat([q, tq], 1), torch.cat([k, tk], 1), torch.cat([v, tv], 1),
                                    attn_mask=mask, dropout_p=0.0, is_causal=False)
        out = out.flatten(2, 3).to(q.dtype)
        video, text = out[:, :-n_text], out[:, -n_text:]
        if getattr(attn, "to_out", None) is not None:
            video = attn.to_out[1](attn.to_out[0](video))
        if getattr(attn, "to_add_out", None) is not None:
            text = attn.to_add_out(text)
        return video, text


class HunyuanVideoAdapter(FamilyAdapter):
    name = "hunyuan_video"
    processor_kinds = frozenset({"hunyuan_video"})
    carries_text = True
    distilled_guidance = True
    scales_model_input = False

    def blocks(self, model: Any) -> list[Any]:
        """Dual-stream blocks, then single-stream blocks."""
        return list(model.transformer_blocks) + list(model.single_transformer_blocks)

    def attention_sites(self, block: Any) -> list[tuple[ProcessorKind, Any]]:
        return [("hunyuan_video", block.attn)]

    def own_stale_processors(self) -> Mapping[str, type]:
        return {"hunyuan_video": StaleHunyuanVideoAttnProcessor}

    def single_block_overrides(self) -> dict[str, Any]:
        return {"num_layers": 1, "num_single_layers": 1}

    def tensor_plan(self, block: Any) -> TensorPlan:
        """As Flux's: single blocks concatenate the attention output and ``proj_mlp``'s into ``proj_out``."""
        return FluxAdapter().tensor_plan(block)

    def timestep(self, t: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
        return t.reshape(()).expand(batch).to(dtype)

    def transformer_kwargs(self, preset: ModelPreset, latent: torch.Tensor, t: torch.Tensor,
                           branch: Branch) -> dict[str, Any]:
        dtype, dev, batch = latent.dtype, latent.device, latent.shape[0]
        kw = {"hidden_states": video_view(preset, latent), "timestep": self.timestep(t.to(dev), batch, dtype),
              "encoder_hidden_states": branch.prompt_embeds.to(device=dev, dtype=dtype),
              "encoder_attention_mask": prompt_mask(branch, dtype, dev),
              "pooled_projections": branch.pooled_embeds.to(device=dev, dtype=dtype), "return_dict": False}
        if preset.config.get("guidance_embeds", True):
            kw["guidance"] = embedded_guidance(branch, batch, dtype, dev)
        return kw

    def noise_from_output(self, preset: ModelPreset, out: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """(B, C, F, H, W) → the runtime's (B, C, F·H, W)."""
        b, c, f, h, w = out.shape
        return out.reshape(b, c, f * h, w)

    def timestep_recipe(self, pipe: Any, steps: int, latent_shape: tuple[int, ...]) -> dict[str, Any]:
        """``HunyuanVideoPipeline.__call__``'s sigmas: ``linspace(1, 0, T + 1)[:-1]`` (the shift is the scheduler's)."""
        import numpy as np

        return {"timestep_kwargs": {"sigmas": np.linspace(1.0, 0.0, steps + 1)[:-1]}}

    def context(self, staged: StagedView, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        m, batch, dev = staged.model, batch_of(branch), staged.device
        ts = self.timestep(t.to(dev), batch, dtype)
        guidance = embedded_guidance(branch, batch, dtype, dev) if m.config.guidance_embeds else None
        temb, _ = m.time_text_embed(ts, branch.pooled_embeds.to(device=dev, dtype=dtype), guidance)
        mask = prompt_mask(branch, dtype, dev)
        text = m.context_embedder(branch.prompt_embeds.to(device=dev, dtype=dtype), ts, mask)
        valid = mask.sum(dim=1, dtype=torch.int)  # the forward keeps the first `valid` prompt tokens
        keep = torch.arange(text.shape[1], device=dev)[None, :] < valid[:, None]
        frames = staged.preset.latent_frames()
        p = staged.p
        grid = torch.empty(1, 0, frames, staged.rows * p // frames, staged.cols * p, device=dev)
        return StepContext(batch=batch, text=text, text_mask=keep, temb=temb, rotary=m.rope(grid))

    def embed(self, staged: StagedView, latent: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        band = latent[:, :, r0 * staged.p: r1 * staged.p].unsqueeze(2)
        return staged.model.x_embedder(band)

    def run_blocks(self, staged: StagedView, lo: int, hi: int, hidden: torch.Tensor, extra: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0, s1 = staged.tokens(r0, r1)
        cos, sin = ctx.rotary
        rotary = (cos[s0:s1], sin[s0:s1])
        text = extra
        for block in staged.blocks[lo:hi]:
            hidden, text = block(hidden, text, ctx.temb, ctx.text_mask, rotary)
        return hidden, text

    def final(self, staged: StagedView, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        """``norm_out``, ``proj_out`` and the forward's unpatchify (channels before the patch: ``(C, p, p)``)."""
        m, p = staged.model, staged.p
        out = m.proj_out(m.norm_out(hidden, ctx.temb))
        b, n = out.shape[0], r1 - r0
        out = out.reshape(b, n, staged.cols, -1, p, p).permute(0, 3, 1, 4, 2, 5)
        return out.reshape(b, out.shape[1], n * p, staged.cols * p)
