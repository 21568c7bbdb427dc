"""Stale K/V attention: PipeFusion's one change inside the model.

Each self- (or joint-) attention layer of a stage gets a processor that keeps the keys
and values of the *whole* image sequence in a buffer. On a full-image pass (warm-up) the
buffer is replaced by the fresh K/V. On a patch pass only the patch's slice of the buffer
is overwritten and the patch's queries attend over the whole buffer: earlier patches of
this step are fresh, later ones one step old. With a fresh buffer this is exactly the
ordinary attention.

There is one processor per attention kind (self, joint, flux); a family's adapter
(:mod:`runtime.families`) says which modules of its blocks get which. Text tokens are
never buffered: cross-attention (PixArt, HunyuanDiT) keeps diffusers' processor, and
joint attention (SD3, Flux) computes the text K/V fresh from the text stream the patch
carries, then concatenates them with the image buffer in the family's order.

Worked example: 16×16 token grid, patch rows 4..8 → image tokens 64..128 are rewritten
(``start = 4·16``, ``stop = 8·16``); the other 192 keys are read from the buffer.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from runtime.attention.kv_state import KVState
from runtime.families import adapter_for


class KVBuffer:
    """The full-sequence K/V of one attention layer; ``seq_dim`` is the token axis."""

    def __init__(self, state: KVState, seq_dim: int) -> None:
        self.state = state
        self.seq_dim = seq_dim
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def slot(self) -> tuple[int, int]:
        """The token slice a patch pass writes (the patch's, here; wider behind Ulysses' exchange)."""
        assert self.state.patch is not None
        return self.state.patch

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.state.patch is None:
            self.k, self.v = k.clone(), v.clone()
            return k, v
        if self.k is None or self.k.shape[0] != k.shape[0]:
            raise RuntimeError("stale K/V buffer is empty: a patch pass needs a full (warm-up) pass first")
        start, stop = self.slot()
        self.k.narrow(self.seq_dim, start, stop - start).copy_(k)
        self.v.narrow(self.seq_dim, start, stop - start).copy_(v)
        return self.k, self.v


def project_heads(attn: Any, x: torch.Tensor, projections: tuple[Any, Any, Any],
                  norms: tuple[Any, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys, values of ``x`` as (B, heads, N, d), queries and keys normalised as the
    layer does (``norms`` may hold None). Image tokens use ``to_q/k/v``; SD3's text tokens
    use ``add_q/k/v_proj``."""
    b = x.shape[0]
    q, k, v = (proj(x) for proj in projections)
    d = k.shape[-1] // attn.heads
    q, k, v = (t.view(b, -1, attn.heads, d).transpose(1, 2) for t in (q, k, v))
    norm_q, norm_k = norms
    if norm_q is not None:
        q = norm_q(q)
    if norm_k is not None:
        k = norm_k(k)
    return q, k, v


def image_qkv(attn: Any, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return project_heads(attn, hidden_states, (attn.to_q, attn.to_k, attn.to_v), (attn.norm_q, attn.norm_k))


def attend(attn: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked attention over (B, heads, N, d), merged back to (B, N, heads·d)."""
    b, _, _, d = q.shape
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
    return out.transpose(1, 2).reshape(b, -1, attn.heads * d).to(q.dtype)


def self_attention_output(attn: Any, out: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
    """``to_out`` (linear, dropout), residual and rescale, as AttnProcessor2_0 ends."""
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + hidden_states
    return out / attn.rescale_output_factor


class StaleSelfAttnProcessor:
    """Image self-attention (``attn1`` of PixArt, DiT and HunyuanDiT blocks), as AttnProcessor2_0
    without masks; rotary embeddings (HunyuanDiT) go on queries and keys, keys are buffered after them."""

    def __init__(self, state: KVState) -> None:
        self.kv = KVBuffer(state, seq_dim=2)

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, temb: Any = None, image_rotary_emb: Any = None,
                 **_: Any) -> torch.Tensor:
        q, k, v = image_qkv(attn, hidden_states)
        if image_rotary_emb is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            q, k = apply_rotary_emb(q, image_rotary_emb), apply_rotary_emb(k, image_rotary_emb)
        k, v = self.kv.update(k, v)
        return self_attention_output(attn, attend(attn, q, k, v), hidden_states)


class StaleJointAttnProcessor:
    """SD3 joint attention: [image; text] keys, the image part from the buffer."""

    def __init__(self, state: KVState) -> None:
        self.kv = KVBuffer(state, seq_dim=2)

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: Any = None, **_: Any) -> Any:
        n = hidden_states.shape[1]
        q, k, v = image_qkv(attn, hidden_states)
        k, v = self.kv.update(k, v)
        if encoder_hidden_states is not None:
            eq, ek, ev = project_heads(attn, encoder_hidden_states,
                                       (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj),
                                       (attn.norm_added_q, attn.norm_added_k))
            q, k, v = torch.cat([q, eq], 2), torch.cat([k, ek], 2), torch.cat([v, ev], 2)
        out = attend(attn, q, k, v)
        text = None
        if encoder_hidden_states is not None:
            out, text = out[:, :n], out[:, n:]
            if not attn.context_pre_only:
                text = attn.to_add_out(text)
        out = attn.to_out[1](attn.to_out[0](out))
        return (out, text) if encoder_hidden_states is not None else out


class StaleFluxAttnProcessor:
    """Flux attention (double blocks: text as added K/V; single blocks: one [text; image] sequence).

    Keys are buffered after rotary embedding, so the buffer holds each token at its own
    position; ``image_rotary_emb`` covers [text; this patch] only.
    """

    def __init__(self, state: KVState) -> None:
        self.state = state
        self.kv = KVBuffer(state, seq_dim=1)

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: Any = None, image_rotary_emb: Any = None, **_: Any) -> Any:
        from diffusers.models.attention_dispatch import dispatch_attention_fn

        q, k, v, text_len = flux_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb,
                                     self.state.text_tokens)
        img_k, img_v = self.kv.update(k[:, text_len:], v[:, text_len:])
        k = torch.cat([k[:, :text_len], img_k], 1)
        v = torch.cat([v[:, :text_len], img_v], 1)
        out = dispatch_attention_fn(q, k, v, attn_mask=None).flatten(2, 3).to(q.dtype)
        if encoder_hidden_states is not None:
            text, out = out[:, :text_len], out[:, text_len:]
            out = attn.to_out[1](attn.to_out[0](out.contiguous()))
            return out, attn.to_add_out(text.contiguous())
        return out


def flux_qkv(attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None,
             image_rotary_emb: Any, text_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Flux's normed, rotated Q/K/V as (B, text + tokens, heads, d), and the text length: a double
    block projects its text stream here, a single block carries ``text_tokens`` in ``hidden_states``.
    The stale-K/V and sequence-parallel processors differ only after this."""
    from diffusers.models.embeddings import apply_rotary_emb
    from diffusers.models.transformers.transformer_flux import _get_qkv_projections

    q, k, v, eq, ek, ev = _get_qkv_projections(attn, hidden_states, encoder_hidden_states)
    q, k, v = (x.unflatten(-1, (-1, attn.head_dim)) for x in (q, k, v))
    q, k = attn.norm_q(q), attn.norm_k(k)
    text_len = text_tokens
    if encoder_hidden_states is not None:
        text_len = encoder_hidden_states.shape[1]
        eq, ek, ev = (x.unflatten(-1, (-1, attn.head_dim)) for x in (eq, ek, ev))
        eq, ek = attn.norm_added_q(eq), attn.norm_added_k(ek)
        q, k, v = torch.cat([eq, q], 1), torch.cat([ek, k], 1), torch.cat([ev, v], 1)
    if image_rotary_emb is not None:
        q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
        k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
    return q, k, v, text_len


STALE_PROCESSORS: Mapping[str, type] = MappingProxyType({
    "self": StaleSelfAttnProcessor, "joint": StaleJointAttnProcessor, "flux": StaleFluxAttnProcessor})
"""The stale-K/V processor of each attention kind (:data:`runtime.families.ProcessorKind`)."""


def install_stale_kv(family: str, blocks: list[Any], state: KVState) -> int:
    """Swap the self/joint attention processor of each block in ``blocks``; returns how many blocks.

    The family's adapter says which attention modules of a block to patch and their kind;
    ``set_processor`` on each attention module works for every family (DiT has no
    model-level ``set_attn_processor``).
    """
    adapter = adapter_for(family)
    processors = {**STALE_PROCESSORS, **adapter.own_stale_processors()}
    for block in blocks:
        for kind, attn in adapter.attention_sites(block):
            attn.set_processor(processors[kind](state))
    return len(blocks)
