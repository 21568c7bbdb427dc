"""The rules on parallel degrees, as loops over the strategies' flags: no strategy is named here.

Each strategy states what one degree of it must fit (:meth:`Strategy.rules`, plus the
generic ``max_degree``) and flags what the cross-axis rules need: ``shards_heads`` (heads
divide by the product of every such degree), ``splits_sequence`` (that product divides the
tokens of the smallest patch), ``exclusive`` (combines only with the replica axes) and
``stale`` (needs warm-up steps). :func:`simulator.plan.violations` and the search space
(:mod:`planner.space`) both read these functions, so there is one rule book. Every message
names its field: ``degrees.ulysses: ulysses(3) does not divide heads(16)``.
"""

from __future__ import annotations

from math import prod
from typing import Mapping

from profiles.catalog.models import ModelPreset
from simulator.strategies import STRATEGIES, Registry


def axis_violations(axis: str, degree: int, model: ModelPreset, rows: int, *,
                    strategies: Registry = STRATEGIES) -> list[str]:
    """What ``degree`` along ``axis`` breaks on its own (``rows``: latent token rows, 0 when unknown)."""
    strategy = strategies.by_axis(axis)
    out = []
    if strategy.max_degree is not None and degree > strategy.max_degree:
        out.append(f"degrees.{axis}: {axis}({degree}) exceeds {strategy.max_degree}")
    if strategy.shards_heads and model.arch.heads % degree:
        out.append(f"degrees.{axis}: {axis}({degree}) does not divide heads({model.arch.heads})")
    return out + strategy.rules(degree, model, rows)


def combination_violations(degrees: Mapping[str, int], model: ModelPreset, *,
                           strategies: Registry = STRATEGIES) -> list[str]:
    """What the degrees break together: heads over the head-sharding axes, exclusive strategies."""
    out = []
    active = strategies.active(degrees)
    heads = [(s.axis, n) for s, n in active if s.shards_heads]
    if len(heads) > 1 and model.arch.heads % prod(n for _, n in heads):
        out.append(f"degrees: {' × '.join(f'{a}({n})' for a, n in heads)} does not divide "
                   f"heads({model.arch.heads})")
    replicas = sorted(s.axis for s in strategies.with_role("replica") if s.axis)
    for strategy, _ in active:
        if not strategy.exclusive:
            continue
        others = [s.axis for s, _ in active if s is not strategy and s.role != "replica"]
        if others:
            out.append(f"degrees.{strategy.axis}: {strategy.axis} combines only with {' and '.join(replicas)}, "
                       f"not with {', '.join(str(a) for a in others)}")
    return out


def sequence_violations(degrees: Mapping[str, int], smallest_patch_tokens: int, *,
                        strategies: Registry = STRATEGIES) -> list[str]:
    """The tokens of the smallest patch must split evenly over the sequence-splitting axes."""
    split = [(s.axis, degrees.get(s.axis, 1)) for s in strategies if s.splits_sequence and s.axis]  # type: ignore
    shards = prod(n for _, n in split)
    if shards > 1 and smallest_patch_tokens % shards:
        return [f"degrees: {' × '.join(f'{a}({n})' for a, n in split)} does not divide the "
                f"{smallest_patch_tokens} tokens of the smallest patch"]
    return []


def sequence_shards(degrees: Mapping[str, int], *, strategies: Registry = STRATEGIES) -> int:
    """Product of the sequence-splitting degrees: into how many shards each token sequence and its K/V go."""
    return prod(degrees.get(s.axis, 1) for s in strategies if s.splits_sequence and s.axis)


def needs_warmup(degrees: Mapping[str, int], patches: int = 1, *, strategies: Registry = STRATEGIES) -> bool:
    """True when a stale strategy is on (or the plan has patches): stale K/V need one full pass first."""
    return patches > 1 or any(s.stale for s, _ in strategies.active(degrees))
