"""Run one block the way its model runs it, for shapes the model alone never produces.

Two tricks make per-block timing faithful without forking diffusers:

* **Captured arguments.** A forward pre-hook on each block records the exact positional
  and keyword arguments the family's ``forward`` passes (timestep embeddings, text states,
  rotary tables, long skips). The profiler then calls the block again with them.
* **Stale K/V.** A PipeFusion patch of ``q`` query tokens attends over the whole image's
  ``S`` keys and values (its own fresh ones written into a buffer of stale ones). While a
  block's self-attention module runs, :class:`StaleKV` stands in for
  ``torch.nn.functional.scaled_dot_product_attention``: it copies the fresh K/V into a
  buffer ``S - q`` tokens longer and attends over all of it — the same work PipeFusion's
  attention processor does. Which modules those are is the family's knowledge (its
  runtime adapter's ``attention_sites``); the caller passes them. Cross-attention to text
  is left alone.

Only the profiler imports this (torch).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Any, Iterator

class StaleKV:
    """A ``scaled_dot_product_attention`` that attends over ``extra_tokens`` more stale K/V.

    Inactive (plain SDPA) except while a self-attention module runs; buffers are kept per
    shape so the timed loop does what PipeFusion does per call: one slice copy, one SDPA.
    """

    def __init__(self, original: Any, extra_tokens: int) -> None:
        self.original = original
        self.extra_tokens = extra_tokens
        self.active = False
        self._buffers: dict[tuple, tuple[Any, Any]] = {}

    def __call__(self, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        if not self.active or self.extra_tokens == 0:
            return self.original(query, key, value, *args, **kwargs)
        mask = args[0] if args else kwargs.get("attn_mask")
        if mask is not None:
            raise RuntimeError("stale K/V timing does not support a self-attention mask")
        fresh = key.shape[-2]
        cache_key = (tuple(key.shape), tuple(value.shape), key.dtype, str(key.device))
        if cache_key not in self._buffers:
            k_shape = (*key.shape[:-2], fresh + self.extra_tokens, key.shape[-1])
            v_shape = (*value.shape[:-2], fresh + self.extra_tokens, value.shape[-1])
            self._buffers[cache_key] = (key.new_zeros(k_shape), value.new_zeros(v_shape))
        k_buf, v_buf = self._buffers[cache_key]
        k_buf[..., :fresh, :].copy_(key)
        v_buf[..., :fresh, :].copy_(value)
        return self.original(query, k_buf, v_buf, *args, **kwargs)


@contextmanager
def stale_kv(attentions: list[Any], extra_tokens: int) -> Iterator[StaleKV]:
    """Within this context the self-attention modules ``attentions`` attend over ``extra_tokens`` more keys."""
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention
    stale = StaleKV(original, extra_tokens)

    def on(_module: Any, _args: Any) -> None:
        stale.active = True

    def off(_module: Any, _args: Any, _out: Any) -> None:
        stale.active = False

    handles = []
    with ExitStack() as stack:
        for attn in attentions:
            handles.append(attn.register_forward_pre_hook(on))
            handles.append(attn.register_forward_hook(off))
        F.scaled_dot_product_attention = stale
        stack.callback(setattr, F, "scaled_dot_product_attention", original)
        for handle in handles:
            stack.callback(handle.remove)
        yield stale


class ForwardCapture:
    """Records each block's call arguments and the model's embed / final wall times.

    ``embed_s`` is the time from the model's forward starting to its first block starting;
    ``final_s`` from its last block returning to the forward returning (everything the
    model does outside its blocks). ``sync`` is called at every boundary (CUDA: synchronise).
    """

    def __init__(self, model: Any, blocks: list[Any], clock: Any, sync: Any, end_module: Any = None) -> None:
        self.blocks = blocks
        self.calls: dict[int, tuple[tuple, dict]] = {}
        self.marks: dict[str, float] = {}
        self._clock, self._sync = clock, sync
        self._handles = [model.register_forward_pre_hook(self._mark("start")),
                         (end_module or model).register_forward_hook(self._mark_after("end"))]
        self._handles.append(blocks[0].register_forward_pre_hook(self._mark("first_block")))
        self._handles.append(blocks[-1].register_forward_hook(self._mark_after("last_block")))
        for index, block in enumerate(blocks):
            self._handles.append(block.register_forward_pre_hook(self._capture(index), with_kwargs=True))

    def _mark(self, name: str) -> Any:
        def hook(_module: Any, _args: Any) -> None:
            self._sync()
            self.marks[name] = self._clock()
        return hook

    def _mark_after(self, name: str) -> Any:
        def hook(_module: Any, _args: Any, _out: Any) -> None:
            self._sync()
            self.marks[name] = self._clock()
        return hook

    def _capture(self, index: int) -> Any:
        def hook(_module: Any, args: tuple, kwargs: dict) -> None:
            if index not in self.calls:
                self.calls[index] = (args, dict(kwargs))
        return hook

    @property
    def embed_s(self) -> float:
        return self.marks["first_block"] - self.marks["start"]

    @property
    def final_s(self) -> float:
        return self.marks["end"] - self.marks["last_block"]

    def reset(self) -> None:
        self.marks = {}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
