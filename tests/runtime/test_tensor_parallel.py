"""Tensor parallel on CPU: a forward of t thread-emulated shards equals the whole model's, each
shard holds 1/t of the split weights, and pfrun's gloo runs equal serial (with CFG around them)."""

from __future__ import annotations

import copy
import threading

import pytest
import torch

from profiles.catalog.models import load_model
from runtime.families import adapter_for
from runtime.model_build import build_transformer
from runtime.model_inputs import transformer_kwargs
from runtime.strategies.tensor import shard_model
from simulator.plan import violations
from simulator.runnable import unrunnable_reason

from .helpers import max_diff, plan, run

FAMILIES = ["pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny", "hunyuan-tiny", "wan-tiny", "qwen-image-tiny"]


class _EmulatedReduce:
    """all_reduce (sum) among ``t`` threads, each holding one shard of the model."""

    def __init__(self, t: int) -> None:
        self.t, self.barrier, self.mailbox = t, threading.Barrier(t, timeout=60), [None] * t

    def member(self, index: int):
        group = self

        def reduce(tensor: torch.Tensor) -> torch.Tensor:
            group.mailbox[index] = tensor
            group.barrier.wait()
            out = sum(group.mailbox[j] for j in range(group.t))
            group.barrier.wait()
            return out
        return reduce


def _inputs(preset, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    adapter = adapter_for(preset.family)
    branch = adapter.random_branch(preset, gen, null=False)
    c = preset.arch.latent_channels
    latent = torch.randn(1, c, 16, 16, generator=gen)
    return transformer_kwargs(preset, latent, torch.tensor(500.0), branch)


def _sharded(name: str, t: int):
    preset = load_model(name)
    whole = build_transformer(preset).eval()
    group = _EmulatedReduce(t)
    shards = []
    for i in range(t):
        shard = copy.deepcopy(whole)
        shard_model(shard, preset.family, t, i, group.member(i))
        shards.append(shard)
    return preset, whole, shards


def _split_params(preset, whole) -> int:
    adapter = adapter_for(preset.family)
    total = 0
    for block in adapter.blocks(whole):
        plan = adapter.tensor_plan(block)
        for s in plan.splits:
            linear = s.parent[int(s.name)] if s.name.isdigit() else getattr(s.parent, s.name)
            total += linear.weight.numel()
            if s.kind == "column" and linear.bias is not None:
                total += linear.bias.numel()  # a row split keeps its whole bias
        total += sum(getattr(parent, name).weight.numel() for parent, name in plan.norms)  # Wan's norms across heads
    return total


@pytest.mark.parametrize("name", FAMILIES)
def test_shards_hold_their_part_and_their_forward_equals_the_whole(name):
    t = 2
    preset, whole, shards = _sharded(name, t)
    full, split = sum(p.numel() for p in whole.parameters()), _split_params(preset, whole)
    assert split > full / 3  # the blocks' attention and MLP Linears: a good part of even a tiny model
    for shard in shards:
        assert sum(p.numel() for p in shard.parameters()) == full - split + split // t
    _check_forward(preset, whole, shards)


def _check_forward(preset, whole, shards) -> None:
    t = len(shards)
    kwargs = _inputs(preset)
    with torch.no_grad():
        ref = whole(**kwargs)[0]
        outs = [None] * t

        def go(i: int) -> None:
            with torch.no_grad():
                outs[i] = shards[i](**kwargs)[0]
        threads = [threading.Thread(target=go, args=(i,)) for i in range(t)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    for out in outs:
        assert float((out - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


@pytest.mark.parametrize("name", FAMILIES)
def test_two_ranks_reproduce_serial(name):
    serial = run(plan(name, steps=2))
    result = run(plan(name, steps=2, degrees={"tensor": 2}))
    scale = max(float(serial.latents[0].abs().max()), 1.0)
    assert max_diff(result, serial) <= 2e-5 * scale
    assert sorted(result.latents) == [0]


def test_four_ranks_cfg_around_two_reproduce_serial():
    """4 ranks: two CFG groups of two tensor ranks (the tiny presets have 2 heads, so tensor=4 is refused)."""
    serial = run(plan("pixart-tiny", steps=2))
    scale = float(serial.latents[0].abs().max())
    cfg = run(plan("pixart-tiny", steps=2, degrees={"cfg": 2, "tensor": 2}))
    assert max_diff(cfg, serial) <= 1e-3 * scale  # CFG parallel runs batch 1 per branch: other kernels
    assert sorted(cfg.latents) == [0]


def test_four_emulated_shards_equal_the_whole_model():
    """t=4 on a 4-head PixArt (the tiny preset with 4 heads of 8), in threads."""
    preset = load_model("pixart-tiny")
    wide = preset.model_copy(update={"config": {**preset.config, "num_attention_heads": 4, "attention_head_dim": 8}})
    whole = build_transformer(wide).eval()
    group = _EmulatedReduce(4)
    shards = [copy.deepcopy(whole) for _ in range(4)]
    for i, shard in enumerate(shards):
        shard_model(shard, "pixart", 4, i, group.member(i))
    _check_forward(wide, whole, shards)


def test_trace_has_the_all_reduces_of_every_block():
    result = run(plan("pixart-tiny", steps=2, degrees={"tensor": 2}))
    layers = load_model("pixart-tiny").arch.layers
    for events in result.events:
        reduces = [e for e in events if e["name"] == "all_reduce"]
        # self-attention, cross-attention and MLP outputs: three row splits per PixArt block
        assert len(reduces) == 3 * layers * 2
        assert all(e["cat"] == "collective" and e["args"]["bytes"] > 0 for e in reduces)
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e["cat"] in ("compute", "collective"))
        assert all(end <= nxt + 1e-3 for (_, end), (nxt, _) in zip(spans, spans[1:]))


def test_a_refused_combination_says_why_in_one_line():
    model = load_model("pixart-tiny")
    assert unrunnable_reason(plan("pixart-tiny", degrees={"tensor": 2}), model) is None
    reason = unrunnable_reason(plan("pixart-tiny", degrees={"tensor": 2}, patches=2, warmup_steps=1), model)
    assert reason and "\n" not in reason and reason.startswith("degrees.tensor") and "patches=2" in reason
    # another loop axis is refused by the plan's rules, in one line too
    found = violations(plan("pixart-tiny", degrees={"tensor": 2, "ulysses": 2}), model)
    assert any(v.startswith("degrees.tensor: tensor combines only with") and "\n" not in v for v in found)
