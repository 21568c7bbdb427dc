"""Ulysses through diffusers' own context parallelism, for models that carry a ``_cp_plan``.

diffusers 0.42 shards a transformer's sequence across ranks with hooks from the model's
``_cp_plan`` (split the tokens entering block 0 and the rotary table, all-to-all inside each
attention, gather at ``proj_out``): ``model.enable_parallelism(config=ContextParallelConfig(...))``.
Wan, Qwen-Image and FLUX.2 carry a plan; the whole forward then runs unchanged on every rank
with 1/n of the tokens, so nothing of pfrun's staged model is involved.

On CPU it needs one work-around: ``ModelMixin._resolve_parallel_config`` picks a device as
``rank % torch.accelerator.device_count()``, which is a division by zero without an
accelerator; :func:`enable_context_parallel` answers 1 for that call only (the mesh and the
collectives are gloo's). Ring on CPU is refused: diffusers' ring attention needs a kernel that
returns the log-sum-exp, and its only CPU backend ("native", SDPA) does not
(``Native attention does not support return_lse=True``).
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import torch

from runtime.errors import UnrunnablePlan


def has_cp_plan(model: Any) -> bool:
    """Whether diffusers knows how to shard this model's sequence."""
    return getattr(type(model), "_cp_plan", None) is not None


def enable_context_parallel(model: Any, *, ulysses: int = 1, ring: int = 1) -> Any:
    """Shard ``model``'s sequence over the default process group (``ulysses × ring`` ranks)."""
    from diffusers import ContextParallelConfig

    if not has_cp_plan(model):
        raise UnrunnablePlan(f"{type(model).__name__} has no _cp_plan: diffusers cannot shard its sequence",
                             field="degrees.ulysses")
    cpu = torch._C._get_accelerator().type == "cpu"
    if cpu and ring > 1:
        raise UnrunnablePlan("diffusers' ring attention needs a kernel returning the log-sum-exp; none runs on CPU",
                             field="degrees.ring")
    config = ContextParallelConfig(ulysses_degree=ulysses if ulysses > 1 else None,
                                   ring_degree=ring if ring > 1 else None)
    if cpu:
        with mock.patch.object(torch.accelerator, "device_count", return_value=1):
            model.enable_parallelism(config=config)
    else:
        model.enable_parallelism(config=config)
    return model
