"""What one generation asks of the machine: tokens, patches, stages, skips, ranks and devices.

Everything the schedule needs that follows from the plan, the model and the cluster is
computed here once, so the simpy processes only look numbers up. Worked example: PixArt-α
at 1024 px has a 64×64 token grid (S = 4096); ``pipefusion=4, patches=8`` cuts it into 8
bands of 8 rows (512 tokens each) and the 28 blocks into stages of 7.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import product

from profiles.catalog.models import ModelPreset
from profiles.topology.graph import ClusterGraph
from simulator.plan import ParallelPlan, patch_rows
from simulator.rank_groups import AXES, rank_of
from simulator.schedule import Unit, units
from simulator.strategies import STRATEGIES
from simulator.strategies.cfg import batch_per_pass

INNER_AXES: tuple[str, ...] = tuple(s.axis for s in STRATEGIES.with_role("stage") if s.axis)
"""Axes whose ranks share one stage's pass (the stage group), in rank order."""


@dataclass(frozen=True)
class Actor:
    """One stage group: the ranks of replica ``data``/``cfg`` that run pipeline stage ``stage``."""

    data: int
    cfg: int
    stage: int
    ranks: tuple[int, ...]
    devices: tuple[str, ...]

    @cached_property
    def label(self) -> str:  # looked up on every event the simulation notes
        return f"d{self.data}c{self.cfg}s{self.stage}"


@dataclass(frozen=True)
class Workload:
    image_tokens: int
    patch_tokens: tuple[int, ...]
    """Tokens of each PipeFusion patch (one entry, the whole image, without PipeFusion)."""
    stage_kinds: tuple[tuple[str, ...], ...]
    """Block kinds of each stage, in order."""
    skip_layers: dict[tuple[int, int], int]
    """(source stage, consumer stage) → long-skip activations sent per item (HunyuanDiT)."""
    batch: int
    hidden: int
    cols: int
    """Token columns of the latent grid (a patch is a band of whole rows)."""
    dtype_bytes: int
    steps: int
    warmup_steps: int
    actors: tuple[Actor, ...]
    degrees: dict[str, int]
    devices: tuple[str, ...]

    @property
    def stages(self) -> int:
        return len(self.stage_kinds)

    @property
    def patches(self) -> int:
        return len(self.patch_tokens)

    @property
    def schedule(self) -> list[Unit]:
        """Every stage's units in order (:mod:`simulator.schedule`); rows are token rows."""
        return units(self.steps, self.warmup_steps, [t // self.cols for t in self.patch_tokens])

    def items(self, step: int) -> list[int | None]:
        """Work items of ``step``: the whole image (None) in warm-up or without patches, else each patch."""
        if step < self.warmup_steps or self.patches == 1:
            return [None]
        return list(range(self.patches))

    def tokens(self, item: int | None) -> int:
        return self.image_tokens if item is None else self.patch_tokens[item]

    def actor(self, data: int, cfg: int, stage: int) -> Actor:
        return self.actors[(data * self.degrees["cfg"] + cfg) * self.stages + stage]

    def inner_groups(self, actor: Actor, axis: str) -> list[list[str]]:
        """Device lists of the groups along ``axis`` inside ``actor``'s stage group."""
        out: dict[tuple, list[str]] = {}
        # coords(rank)[a] = (rank // stride[a]) % size[a] (row-major over AXES), without a dict per rank
        strides, stride = {}, 1
        for a in reversed(AXES):
            strides[a] = stride
            stride *= self.degrees.get(a, 1)
        others = [(strides[a], self.degrees.get(a, 1)) for a in INNER_AXES if a != axis]
        for rank, device in zip(actor.ranks, actor.devices):
            key = tuple((rank // st) % size for st, size in others)
            out.setdefault(key, []).append(device)
        return list(out.values())


def skip_sources(kinds: list[str], stage_of_layer: list[int]) -> dict[tuple[int, int], int]:
    """HunyuanDiT: block i > L//2 reads block L−1−i's output; count cross-stage pairs."""
    layers = len(kinds)
    out: dict[tuple[int, int], int] = {}
    for i, kind in enumerate(kinds):
        if kind == "hunyuan_skip_block":
            src, dst = stage_of_layer[layers - 1 - i], stage_of_layer[i]
            if src != dst:
                out[(src, dst)] = out.get((src, dst), 0) + 1
    return out


def build_workload(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph, *,
                   dtype_bytes: int = 2) -> Workload:
    rows, cols = model.token_grid(plan.height_px, plan.width_px)
    d = plan.degrees
    patches = plan.patches_in_effect
    patch_tokens = tuple(r * cols for r in patch_rows(rows, min(patches, rows)))
    kinds = model.arch.block_kinds()
    stage_kinds, stage_of_layer = [], []
    for s, layer_range in enumerate(plan.stage_layers(model)):
        stage_kinds.append(tuple(kinds[i] for i in layer_range))
        stage_of_layer.extend([s] * len(layer_range))
    degrees = d.as_dict()
    devices = tuple(plan.devices(cluster))
    actors = []
    pipeline = STRATEGIES.pipeline.axis
    for data, cfg, stage in product(range(d.data), range(d.cfg), range(d.pipeline_stages)):
        ranks = tuple(rank_of({"data": data, "cfg": cfg, pipeline: stage,
                               **dict(zip(INNER_AXES, inner))}, degrees)
                      for inner in product(*(range(degrees[a]) for a in INNER_AXES)))
        actors.append(Actor(data, cfg, stage, ranks, tuple(devices[r] for r in ranks)))
    return Workload(
        image_tokens=rows * cols, patch_tokens=patch_tokens, stage_kinds=tuple(stage_kinds),
        skip_layers=skip_sources(kinds, stage_of_layer), batch=batch_per_pass(degrees, model),
        hidden=model.arch.hidden_size, cols=cols, dtype_bytes=dtype_bytes, steps=plan.steps,
        warmup_steps=min(plan.warmup_steps, plan.steps), actors=tuple(actors), degrees=degrees,
        devices=devices)
