"""The small interface every parallel strategy implements, and the registry that finds them.

A plan's degrees are composed the way xDiT composes them: *replicas* (data, cfg) run
copies of a pipeline; a *pipeline* (PipeFusion, one stage when it is off) cuts the blocks
into stages; inside each stage a *stage group* of ranks shares the work of every pass
(Ulysses, Ring, tensor parallel or DistriFusion). A :class:`StageStrategy` says how one of
these shares a pass: what the per-rank layer shape becomes (:meth:`shard`) and which
collectives it needs (:meth:`collectives`), each either blocking (on the critical path of
the pass) or overlapped with (a stated fraction of) the pass's compute. Adding a strategy
means adding a module that defines one class and registers it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, ClassVar, Literal, TypeVar

from profiles.cost_model import LayerShape
from simulator.errors import SimulatorError


@dataclass(frozen=True)
class PassWork:
    """One pass of a stage group over one item (a patch, or the whole image).

    Token counts are for the whole item, before the stage group shards it. ``layers`` is
    the number of transformer blocks of the stage; bytes use ``dtype_bytes``.
    """

    query_tokens: int
    kv_tokens: int
    batch: int
    layers: int
    hidden: int
    dtype_bytes: int
    warmup: bool
    """True for synchronous steps (PipeFusion's and DistriFusion's warm-up)."""
    out_bytes: int
    """Bytes of the item's output latent (what DistriFusion gathers at the end of a step)."""
    attention_share: float = 1.0
    """Fraction of the stage's per-rank FLOPs spent in attention over the image K/V
    (:func:`profiles.flops.attention_flops` over :func:`profiles.flops.layer_flops`): the
    compute a transfer of each layer's K/V can hide behind."""
    first_step: bool = False
    """True for the generation's first step: there are no stale activations from an earlier step yet."""


@dataclass(frozen=True)
class CollectiveSpec:
    """A collective a strategy needs per pass, over its own axis' groups inside the stage group."""

    axis: str
    kind: Literal["all_reduce", "all_gather", "all_to_all", "ring_pass"]
    bytes_per_rank: float
    messages: int
    overlapped: bool
    """True: runs alongside the pass's compute; False: after it, on the critical path."""
    overlap_fraction: float = 1.0
    """Overlapped only: the fraction ``f`` of the pass's compute ``C`` it can hide behind.

    Per layer the collective can run beside only ``f`` of the layer's compute (Ring: its
    K/V exist after the projections and are consumed by the attention, before the MLP), so
    the pass takes ``(1−f)·C + max(f·C, comm)``; the engine starts the collective
    ``(1−f)·C`` into the pass and waits for it at the end, which gives the same total. 1 for traffic that may overlap the
    whole pass (DistriFusion's stale K/V, needed only at the next step)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap_fraction <= 1.0:
            raise SimulatorError(f"overlap_fraction {self.overlap_fraction} of {self.axis} is not in [0, 1]")


def split_by_overlap(spec: CollectiveSpec, efficiency: float) -> tuple[CollectiveSpec, ...]:
    """An overlapped collective on a box whose transfers hide only ``efficiency`` of their time.

    The share ``1 − efficiency`` of its bytes becomes a blocking collective after the pass
    (the copy kernels that could not run beside compute); the rest stays overlapped and
    keeps the route latencies. Blocking collectives and ``efficiency = 1`` pass through.
    """
    if not spec.overlapped or efficiency >= 1.0:
        return (spec,)
    if efficiency <= 0.0:
        return (replace(spec, overlapped=False, overlap_fraction=1.0),)
    return (replace(spec, bytes_per_rank=spec.bytes_per_rank * efficiency),
            replace(spec, bytes_per_rank=spec.bytes_per_rank * (1.0 - efficiency), messages=0,
                    overlapped=False, overlap_fraction=1.0))


def output_gather(axis: str, work: PassWork, degree: int) -> list[CollectiveSpec]:
    """The prediction's token shards all-gathered along ``axis`` after the output layer (the
    scheduler steps the whole latent); none before the last stage, where ``out_bytes`` is 0.

    Each axis that splits the tokens gathers its share on its own, so a Ulysses × Ring
    hybrid prices two gathers of 1/u and 1/r of the prediction where one gather of the
    1/(u·r) shards would do (at most one extra prediction's bytes per step).
    """
    if work.out_bytes <= 0:
        return []
    return [CollectiveSpec(axis, "all_gather", ceil_div(work.out_bytes, degree), 1, overlapped=False)]


class StageStrategy:
    """How ranks along one axis share a stage's pass. Subclasses override what differs."""

    name: ClassVar[str] = ""
    axis: ClassVar[str] = ""

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return shape

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        return []


class SequenceShard(StageStrategy):
    """Sequence parallelism (Ulysses, Ring): each rank keeps 1/degree of the query tokens.

    The text tokens of joint-attention models are split the same way when the shape
    counts them separately.
    """

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        text = shape.text_query_tokens
        return replace(shape, query_tokens=ceil_div(shape.query_tokens, degree),
                       text_query_tokens=None if text is None else ceil_div(text, degree))



S = TypeVar("S", bound=type)


class Registry:
    """Name → strategy class; refuses duplicates and lists the valid names on a miss."""

    def __init__(self) -> None:
        self._items: dict[str, type] = {}

    def register(self, cls: S) -> S:
        name = getattr(cls, "name", "")
        if not name:
            raise SimulatorError(f"strategy {cls.__name__} has no name")
        if name in self._items:
            raise SimulatorError(f"strategy {name!r} is registered twice "
                                 f"({self._items[name].__name__} and {cls.__name__})")
        self._items[name] = cls
        return cls

    def get(self, name: str) -> type:
        try:
            return self._items[name]
        except KeyError:
            raise SimulatorError(f"unknown strategy {name!r}; strategies: {', '.join(self.names())}",
                                 field="strategy") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def decorator(self) -> Callable[[S], S]:
        return self.register


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
