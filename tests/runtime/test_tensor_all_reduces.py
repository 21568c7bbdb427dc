"""The simulator's tensor-parallel all-reduce counts per block kind are the runtime's own.

pfrun's tensor loop all-reduces once per row-split Linear and once per head-sharded RMS norm
(:mod:`runtime.strategies.tensor`); :attr:`profiles.families.spec.BlockKind.tensor_all_reduces`
says how many of each a block kind has, split by the tokens the call carries. Here they are
counted on the blocks of each tiny preset, built from its config with random weights.
"""

from __future__ import annotations

import pytest

from profiles.catalog.models import load_model
from runtime.errors import UnrunnablePlan
from runtime.families import adapter_for
from runtime.model_build import build_transformer

TINY = ("dit-tiny", "pixart-tiny", "flux-tiny", "sd3-tiny", "sd3.5-tiny", "hunyuan-tiny", "hunyuan-video-tiny",
        "qwen-image-tiny", "wan-tiny")
TEXT_STREAM = ("to_add_out", "context", "txt_")
"""Names of the joint blocks' text-stream modules (diffusers: ``to_add_out``, ``ff_context``, ``txt_mlp``)."""


def runtime_counts(name: str) -> dict[str, set[tuple[int, int, int, int]]]:
    """Per block kind, the runtime's row splits (query, text, both streams) and sharded norms."""
    preset = load_model(name)
    adapter = adapter_for(preset.family)
    single = {"flux_single_block", "hunyuan_video_single_block"}  # one stream of text and image tokens
    found: dict[str, set[tuple[int, int, int, int]]] = {}
    for kind, block in zip(preset.arch.block_kinds(), adapter.blocks(build_transformer(preset)), strict=True):
        names = {id(m): n for n, m in block.named_modules()}
        plan = adapter.tensor_plan(block)
        rows = [s for s in plan.splits if s.kind == "row"]
        text = sum(1 for s in rows if any(t in f"{names.get(id(s.parent), '')}.{s.name}" for t in TEXT_STREAM))
        counts = (0, 0, len(rows), len(plan.norms)) if kind in single else (len(rows) - text, text, 0, len(plan.norms))
        found.setdefault(kind, set()).add(counts)
    return found


@pytest.mark.parametrize("name", TINY)
def test_each_block_kind_states_the_all_reduces_the_runtime_makes(name: str) -> None:
    preset = load_model(name)
    for kind, counts in runtime_counts(name).items():
        assert counts == {preset.arch.block_kind(kind).tensor_all_reduces}, kind


def test_a_family_without_a_tensor_plan_keeps_the_default() -> None:
    preset = load_model("flux2-tiny")
    with pytest.raises(UnrunnablePlan):
        runtime_counts("flux2-tiny")
    assert {preset.arch.block_kind(k).tensor_all_reduces for k in set(preset.arch.block_kinds())} == {(2, 0, 0, 0)}
