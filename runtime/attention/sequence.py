"""Sequence-parallel attention processors: one per attention kind, the exchange a pluggable core.

Ulysses, Ring, USP (Ulysses × Ring) and their PipeFusion hybrids differ only in *how* the
queries of a rank's band of image tokens meet the keys and values of the whole image. What
a processor does around that is the same for all of them and is family-specific: project
Q/K/V (SD3's text through ``add_*_proj``; Flux's norms and rotary; HunyuanDiT's rotary), then
after the attention the output projections. So each attention kind has one processor here
(``self``: PixArt, DiT, HunyuanDiT; ``joint``: SD3; ``flux``: Flux's double and single blocks;
a family's own kinds in its adapter's ``own_sequence_processors``: Wan, Qwen-Image)
and each takes a :class:`SequenceAttention` *core*:

* :class:`LocalAttention`: plain attention over what the rank holds (the innermost core of
  Ulysses; optionally through a stale K/V buffer, PipeFusion × Ulysses);
* :class:`runtime.attention.ulysses.UlyssesAttention`: heads ↔ sequence all-to-alls around
  an inner core (Local, or Ring for USP);
* Ring's ``RingAttention`` (runtime/attention/ring.py): K/V blocks around the ring, online softmax.

Joint attention (SD3, Flux): the text tokens are replicated on every rank of the group (the
text stream is computed whole on each, as every rank has the whole prompt). A core receives
the text's Q/K/V for every head besides the image's; Ulysses keeps its ranks' heads of them
(no traffic: they are already there) and gathers the text output's heads back in its second
all-to-all; Ring joins the text K/V to every rank's keys (as xDiT's ``joint_strategy``) and
merges the text queries' partials in a fixed order, so every rank's text stream stays
bit-identical. ``text_first``: Flux orders the joint sequence [text; image], SD3 [image; text].

All tensors are (B, heads, tokens, head_dim).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Protocol

import torch
import torch.nn.functional as F

from runtime.attention.kv_state import KVState
from runtime.attention.stale_kv import flux_qkv, image_qkv, project_heads, self_attention_output
from runtime.families import adapter_for

TextQKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class SequenceAttention(Protocol):
    """How a rank's image queries (and the replicated text's) attend over the whole sequence."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text: TextQKV | None,
               text_first: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention output of the image queries ``q`` and of the text queries (None without text)."""
        ...


class KVHook(Protocol):
    """A stale K/V buffer seen by a core: the fresh keys of this pass in, the keys to attend over out."""

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def joint_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text: TextQKV | None,
                    text_first: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Unmasked SDPA over [image; text] (or [text; image]) as diffusers' processors concatenate them."""
    if text is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False), None
    n, nt = q.shape[2], text[0].shape[2]
    parts = [(text[i], x) if text_first else (x, text[i]) for i, x in enumerate((q, k, v))]
    out = F.scaled_dot_product_attention(*(torch.cat(p, 2) for p in parts), dropout_p=0.0, is_causal=False)
    return (out[:, :, nt:], out[:, :, :nt]) if text_first else (out[:, :, :n], out[:, :, n:])


class LocalAttention:
    """Attention over what this rank holds, the image K/V optionally through a stale buffer."""

    def __init__(self, kv: KVHook | None = None) -> None:
        self.kv = kv

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text: TextQKV | None,
               text_first: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.kv is not None:
            k, v = self.kv.update(k, v)
        return joint_attention(q, k, v, text, text_first)


def _merge_heads(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d).to(dtype)


class SequenceSelfAttnProcessor:
    """Image self-attention (``self``: PixArt, DiT, HunyuanDiT), rotary on the rank's own tokens."""

    def __init__(self, core: SequenceAttention, state: KVState) -> None:
        self.core = core

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None,
                 attention_mask: Any = None, temb: Any = None, image_rotary_emb: Any = None,
                 **_: Any) -> torch.Tensor:
        if attention_mask is not None:
            raise NotImplementedError("the sequence-parallel processor runs unmasked self-attention only")
        q, k, v = image_qkv(attn, hidden_states)
        if image_rotary_emb is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            q, k = apply_rotary_emb(q, image_rotary_emb), apply_rotary_emb(k, image_rotary_emb)
        out, _ = self.core.attend(q, k, v, None, False)
        return self_attention_output(attn, _merge_heads(out, q.dtype), hidden_states)


class SequenceJointAttnProcessor:
    """SD3 joint attention ([image; text]), as diffusers' ``JointAttnProcessor2_0`` around the core."""

    def __init__(self, core: SequenceAttention, state: KVState) -> None:
        self.core = core

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: Any = None, **_: Any) -> Any:
        q, k, v = image_qkv(attn, hidden_states)
        text = None
        if encoder_hidden_states is not None:
            text = project_heads(attn, encoder_hidden_states, (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj),
                                 (attn.norm_added_q, attn.norm_added_k))
        out, text_out = self.core.attend(q, k, v, text, False)
        out = attn.to_out[1](attn.to_out[0](_merge_heads(out, q.dtype)))
        if text_out is None:
            return out
        text_out = _merge_heads(text_out, q.dtype)
        if not attn.context_pre_only:
            text_out = attn.to_add_out(text_out)
        return out, text_out


class SequenceFluxAttnProcessor:
    """Flux attention (double blocks: text as added K/V; single blocks: [text; band] in one sequence).

    Rotary goes on [text; this rank's tokens] (the adapter cuts the table to them) before any
    exchange, so every key keeps its position."""

    def __init__(self, core: SequenceAttention, state: KVState) -> None:
        self.core, self.state = core, state

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: Any = None, image_rotary_emb: Any = None, **_: Any) -> Any:
        q, k, v, text_len = flux_qkv(attn, hidden_states, encoder_hidden_states, image_rotary_emb,
                                     self.state.text_tokens)
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # (B, h, text + band, d)
        text = tuple(x[:, :, :text_len] for x in (q, k, v)) if text_len else None
        out, text_out = self.core.attend(q[:, :, text_len:], k[:, :, text_len:], v[:, :, text_len:],
                                         text, True)  # type: ignore[arg-type]
        out = _merge_heads(out, q.dtype)
        if encoder_hidden_states is not None:
            assert text_out is not None
            out = attn.to_out[1](attn.to_out[0](out.contiguous()))
            return out, attn.to_add_out(_merge_heads(text_out, q.dtype).contiguous())
        return out if text_out is None else torch.cat([_merge_heads(text_out, q.dtype), out], 1)


SEQUENCE_PROCESSORS: Mapping[str, type] = MappingProxyType({
    "self": SequenceSelfAttnProcessor, "joint": SequenceJointAttnProcessor, "flux": SequenceFluxAttnProcessor})
"""The sequence-parallel processor of each attention kind (:data:`runtime.families.ProcessorKind`)."""


class CoreFactory(Protocol):
    def __call__(self) -> SequenceAttention:
        """A core for one attention layer (each layer owns its stale buffer, if any)."""
        ...


def install_sequence(family: str, blocks: list[Any], make_core: CoreFactory, state: KVState) -> int:
    """Give every self/joint attention module of ``blocks`` a sequence-parallel processor with
    its own core from ``make_core``; returns how many blocks."""
    adapter = adapter_for(family)
    processors = {**SEQUENCE_PROCESSORS, **adapter.own_sequence_processors()}
    for block in blocks:
        for kind, attn in adapter.attention_sites(block):
            attn.set_processor(processors[kind](make_core(), state))
    return len(blocks)
