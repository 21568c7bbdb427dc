"""The small interface every parallel strategy implements, and the registry that finds them.

A plan's degrees are composed the way xDiT composes them: *replicas* (data, cfg) run
copies of a pipeline; a *pipeline* (PipeFusion, one stage when it is off) cuts the blocks
into stages; inside each stage a *stage group* of ranks shares the work of every pass
(Ulysses, Ring, tensor parallel or DistriFusion). A :class:`StageStrategy` says how one of
these shares a pass: what the per-rank layer shape becomes (:meth:`shard`) and which
collectives it needs (:meth:`collectives`), each either blocking (on the critical path of
the pass) or overlapped with the pass's compute. Adding a strategy means adding a module
that defines one class and registers it.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class CollectiveSpec:
    """A collective a strategy needs per pass, over its own axis' groups inside the stage group."""

    axis: str
    kind: Literal["all_reduce", "all_gather", "all_to_all", "ring_pass"]
    bytes_per_rank: float
    messages: int
    overlapped: bool
    """True: runs alongside the pass's compute; False: after it, on the critical path."""


class StageStrategy:
    """How ranks along one axis share a stage's pass. Subclasses override what differs."""

    name: ClassVar[str] = ""
    axis: ClassVar[str] = ""

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return shape

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        return []


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
