"""Where the current pass writes into the stale K/V buffers: one small object shared by a rank's processors.

Apart from the processors (:mod:`runtime.attention.stale_kv`) so that the staged model,
which sets it before each pass, does not import them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class KVState:
    """Where the current pass writes; shared by every stale-K/V processor of one rank."""

    patch: tuple[int, int] | None = None
    """Image-token slice of a patch pass; None: a full-image pass (the buffer is replaced)."""
    text_tokens: int = 0
    """Text tokens in front of the image tokens (Flux single blocks see one joint sequence)."""
