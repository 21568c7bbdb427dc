"""diffusers' context parallelism (Ulysses) on gloo: Wan and Qwen-Image forwards equal the single-rank forward."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from profiles.catalog.models import load_model
from runtime.context_parallel import enable_context_parallel, has_cp_plan
from runtime.errors import UnrunnablePlan
from runtime.model_build import build_transformer
from runtime.model_inputs import initial_latent, make_conditioning, transformer_kwargs

NAMES = ("wan-tiny", "qwen-image-tiny")


def _forward(name: str, model) -> torch.Tensor:
    preset = load_model(name)
    latent = initial_latent(preset, 128, 128, seed=3)
    branch = make_conditioning(preset, seed=3).cond
    with torch.inference_mode():
        return model(**transformer_kwargs(preset, latent, torch.tensor(700.0), branch))[0]


def _rank(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for name in NAMES:
            model = build_transformer(load_model(name))
            ref = _forward(name, model)
            enable_context_parallel(model, ulysses=world)
            out[f"{name}/{rank}"] = float((_forward(name, model) - ref).abs().max())
    finally:
        dist.destroy_process_group()


def test_ulysses_through_diffusers_cp_plan_is_exact_on_gloo():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank, args=(2, port, out), nprocs=2)
        diffs = dict(out)
    assert set(diffs) == {f"{n}/{r}" for n in NAMES for r in (0, 1)}
    assert max(diffs.values()) <= 1e-5, diffs


def test_ring_on_cpu_and_models_without_a_plan_are_refused():
    import diffusers

    wan = build_transformer(load_model("wan-tiny"), meta=True)
    assert has_cp_plan(wan) and diffusers.QwenImageTransformer2DModel._cp_plan
    assert diffusers.HunyuanVideoTransformer3DModel._cp_plan is None
    with pytest.raises(UnrunnablePlan, match="has no _cp_plan"):
        enable_context_parallel(torch.nn.Linear(1, 1), ulysses=2)
    with pytest.raises(UnrunnablePlan, match="log-sum-exp"):
        enable_context_parallel(wan, ring=2)
