"""Qwen-Image (``QwenImageTransformer2DModel``): double-stream blocks, joint [text; image] attention.

Latents are packed 2×2 into tokens as Flux packs them (``img_in`` is a Linear per token, so
embedding a band of rows alone is exact); the text stream, RMS-normed and projected once
per step (``txt_norm``, ``txt_in``), runs beside the image in every block, so a PipeFusion
patch carries it from stage to stage. Rotary positions are complex, one table for the image
tokens and one for the text (whose positions follow the image's); a patch's blocks get the
image rows of its band. The pipeline passes ``timestep / 1000`` (the embedding scales it
back) and, for an all-ones prompt mask, no mask.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from profiles.catalog.models import ModelPreset
from runtime.attention.kv_state import KVState
from runtime.conditioning import Branch
from runtime.families.base import FamilyAdapter, ProcessorKind, StagedView, StepContext, batch_of
from runtime.families.flux import pack_flux, unpack_flux


def qwen_qkv(attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
             image_rotary_emb: Any) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The image's and the text's Q/K/V as (B, N, heads, d), RMS-normed per head and rotated as
    ``QwenDoubleStreamAttnProcessor2_0`` does. The stale and sequence-parallel processors differ only after this."""
    from diffusers.models.transformers.transformer_qwenimage import apply_rotary_emb_qwen

    d = attn.inner_dim // attn.heads
    q, k, v = (proj(hidden_states).unflatten(-1, (-1, d)) for proj in (attn.to_q, attn.to_k, attn.to_v))
    tq, tk, tv = (proj(encoder_hidden_states).unflatten(-1, (-1, d))
                  for proj in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
    q, k, tq, tk = attn.norm_q(q), attn.norm_k(k), attn.norm_added_q(tq), attn.norm_added_k(tk)
    if image_rotary_emb is not None:
        img, txt = image_rotary_emb
        q, k = apply_rotary_emb_qwen(q, img, use_real=False), apply_rotary_emb_qwen(k, img, use_real=False)
        tq, tk = apply_rotary_emb_qwen(tq, txt, use_real=False), apply_rotary_emb_qwen(tk, txt, use_real=False)
    return (q, k, v), (tq, tk, tv)


def qwen_output(attn: Any, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The output projections of the image's and the text's attention outputs (B, N, heads·d)."""
    image = attn.to_out[0](image.contiguous())
    if len(attn.to_out) > 1:
        image = attn.to_out[1](image)
    return image, attn.to_add_out(text.contiguous())


class StaleQwenAttnProcessor:
    """``QwenDoubleStreamAttnProcessor2_0`` without a mask, the image K/V (after rotary) from the buffer."""

    def __init__(self, state: KVState) -> None:
        from runtime.attention.stale_kv import KVBuffer

        self.kv = KVBuffer(state, seq_dim=1)

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 encoder_hidden_states_mask: Any = None, attention_mask: Any = None,
                 image_rotary_emb: Any = None, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        if encoder_hidden_states_mask is not None:
            raise NotImplementedError("the stale K/V Qwen-Image processor runs without a prompt mask")
        (q, k, v), (tq, tk, tv) = qwen_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        k, v = self.kv.update(k, v)
        out = dispatch_attention_fn(torch.cat([tq, q], 1), torch.cat([tk, k], 1), torch.cat([tv, v], 1),
                                    attn_mask=None, dropout_p=0.0, is_causal=False)
        out = out.flatten(2, 3).to(q.dtype)
        n = encoder_hidden_states.shape[1]
        return qwen_output(attn, out[:, n:], out[:, :n])


class SequenceQwenAttnProcessor:
    """``QwenDoubleStreamAttnProcessor2_0`` without a mask around a sequence-parallel core
    (Ulysses, Ring, USP; with PipeFusion, the core holds the stale buffer): the text, replicated on
    every rank, goes to the core beside this rank's image tokens, in Qwen's [text; image] order."""

    def __init__(self, core: Any, state: KVState) -> None:
        self.core = core

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 encoder_hidden_states_mask: Any = None, attention_mask: Any = None,
                 image_rotary_emb: Any = None, **_: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if encoder_hidden_states_mask is not None:
            raise NotImplementedError("the sequence-parallel Qwen-Image processor runs without a prompt mask")
        image, text = qwen_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        heads = [x.transpose(1, 2) for x in image]
        out, text_out = self.core.attend(*heads, tuple(x.transpose(1, 2) for x in text), True)
        merge = [x.transpose(1, 2).flatten(2, 3).to(heads[0].dtype) for x in (out, text_out)]
        return qwen_output(attn, *merge)


class QwenImageAdapter(FamilyAdapter):
    name = "qwen_image"
    processor_kinds = frozenset({"qwen_image"})
    carries_text = True

    def attention_sites(self, block: Any) -> list[tuple[ProcessorKind, Any]]:
        return [("qwen_image", block.attn)]

    def own_stale_processors(self) -> Mapping[str, type]:
        return {"qwen_image": StaleQwenAttnProcessor}

    def own_sequence_processors(self) -> Mapping[str, type]:
        return {"qwen_image": SequenceQwenAttnProcessor}

    def timestep(self, t: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
        return t.reshape(()).expand(batch).to(dtype) / 1000

    def transformer_kwargs(self, preset: ModelPreset, latent: torch.Tensor, t: torch.Tensor,
                           branch: Branch) -> dict[str, Any]:
        batch, _, h, w = latent.shape
        p = preset.arch.patch_size
        dtype, dev = latent.dtype, latent.device
        return {"hidden_states": pack_flux(latent), "timestep": self.timestep(t.to(dev), batch, dtype),
                "encoder_hidden_states": branch.prompt_embeds.to(device=dev, dtype=dtype),
                "encoder_hidden_states_mask": None, "img_shapes": [[(1, h // p, w // p)]] * batch,
                "return_dict": False}

    def noise_from_output(self, preset: ModelPreset, out: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        return unpack_flux(out, rows, cols)

    def context(self, staged: StagedView, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        m, batch, dev = staged.model, batch_of(branch), staged.device
        ts = self.timestep(t.to(dev), batch, dtype)
        text = m.txt_in(m.txt_norm(branch.prompt_embeds.to(device=dev, dtype=dtype)))
        probe = torch.empty(0, dtype=dtype, device=dev)  # the embedding reads only its dtype
        rotary = m.pos_embed([[(1, staged.rows, staged.cols)]] * batch, max_txt_seq_len=text.shape[1], device=dev)
        return StepContext(batch=batch, text=text, temb=m.time_text_embed(ts, probe), rotary=rotary)

    def embed(self, staged: StagedView, latent: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        return staged.model.img_in(pack_flux(latent[:, :, r0 * staged.p: r1 * staged.p]))

    def run_blocks(self, staged: StagedView, lo: int, hi: int, hidden: torch.Tensor, extra: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        s0, s1 = staged.tokens(r0, r1)
        img, txt = ctx.rotary
        rotary = (img[s0:s1], txt)
        text = extra
        for block in staged.blocks[lo:hi]:
            text, hidden = block(hidden_states=hidden, encoder_hidden_states=text, encoder_hidden_states_mask=None,
                                 temb=ctx.temb, image_rotary_emb=rotary, joint_attention_kwargs=None)
        return hidden, text

    def final(self, staged: StagedView, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        m = staged.model
        return unpack_flux(m.proj_out(m.norm_out(hidden, ctx.temb)), r1 - r0, staged.cols)
