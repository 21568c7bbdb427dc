"""The one interface every parallel strategy implements, and the registry that finds them.

A plan's degrees are composed the way xDiT composes them: *replicas* (data, cfg) run
copies of a pipeline; a *pipeline* (PipeFusion, one stage when it is off) cuts the blocks
into stages; inside each stage a *stage group* of ranks shares the work of every pass
(sequence splits, tensor parallel, patch parallel). A :class:`Strategy` is everything the
simulator and the planner know about one of these, in one class:

- who it is: its axis (the ``Degrees`` field), its position in the rank order, a one-line
  description (the field's description), its :data:`Role`;
- its rules: what one degree must divide or fit (:meth:`Strategy.rules`), and the flags the
  cross-axis rules loop over (``shards_heads``, ``splits_sequence``, ``exclusive``,
  ``stale``);
- its cost: how it shards a layer shape (:meth:`Strategy.shard`), which collectives a pass
  needs (:meth:`Strategy.collectives`), each blocking or overlapped with (a stated fraction
  of) the pass's compute, and the buffers it adds to a device (:meth:`Strategy.buffers`);
- its placement preference: the bytes per step it puts on its groups
  (:meth:`Strategy.traffic_bytes`; the heaviest axis gets the nearest devices);
- its runtime: ``runtime_module`` (the dotted path of its pfrun module) or None with a
  one-line ``not_executable`` reason, and the attention kinds its runtime handles.

Adding a strategy means adding one module under ``simulator/strategies`` with one subclass;
:func:`simulator.strategies.registry` finds it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Callable, ClassVar, Iterator, Literal, Mapping, TypeVar

from profiles.costs.cost_model import LayerShape
from profiles.catalog.models import ModelPreset
from simulator.errors import SimulatorError

Role = Literal["replica", "pipeline", "stage"]
"""``replica``: copies of the whole pipeline; ``pipeline``: cuts the blocks into stages;
``stage``: ranks that share every pass of one stage."""
ATTENTION_KINDS: frozenset[str] = frozenset({"cross", "joint", "self"})
"""Every :data:`profiles.catalog.architecture.AttentionKind`."""


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
    """True for synchronous steps (warm-up steps of the stale strategies)."""
    out_bytes: int
    """Bytes of the item's output latent (what a token split gathers at the end of a step)."""
    attention_share: float = 1.0
    """Fraction of the stage's per-rank FLOPs spent in attention over the image K/V
    (:func:`profiles.costs.flops.attention_flops` over :func:`profiles.costs.flops.layer_flops`): the
    compute a transfer of each layer's K/V can hide behind."""
    first_step: bool = False
    """True for the generation's first step: there are no stale activations from an earlier step yet."""
    tensor_all_reduces: tuple[int, int, int, int] | None = None
    """The stage's blocks' tensor-parallel all-reduces, summed per kind of call (see
    :attr:`profiles.families.spec.BlockKind.tensor_all_reduces`); None: two per layer."""
    text_tokens: int = 0
    """Text tokens beside the image tokens (the joint blocks' text stream)."""


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
    whole pass (stale K/V, needed only at the next step)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap_fraction <= 1.0:
            raise SimulatorError(f"overlap_fraction {self.overlap_fraction} of {self.axis} is not in [0, 1]")


@dataclass(frozen=True)
class PlanFacts:
    """What a strategy's rules read of a plan; the plan module builds it, so strategies never import it."""

    degrees: Mapping[str, int]
    patches: int
    """PipeFusion patches M as the plan gives them."""
    warmup_steps: int
    steps: int
    rows: int
    """Latent token rows (0 when the resolution is not a whole number of tokens)."""
    cols: int
    pipelined: bool
    """True when the pipeline axis has several stages or the plan has several patches."""


@dataclass(frozen=True)
class MemoryContext:
    """One device's working set before the strategies add their buffers (see :mod:`simulator.memory`)."""

    batch: int
    image_tokens: int
    query_tokens: int
    """Tokens the rank processes at once, after every axis' :meth:`Strategy.shard`."""
    hidden: int
    layers: int
    """Blocks on the device's stage."""
    patches: int
    """PipeFusion patches in effect (1 without a pipeline)."""
    kv_shards: int
    """Product of the ``splits_sequence`` degrees: how many ways each rank's K/V are split."""
    dtype_bytes: int


@dataclass(frozen=True)
class MemoryTerms:
    """The buffers one strategy adds to a device, in bytes (the largest of each kind is kept)."""

    kv_buffers: int = 0
    receive_buffers: int = 0


@dataclass(frozen=True)
class TrafficContext:
    """What a strategy's placement preference reads: the model and the image, per step."""

    model: ModelPreset
    image_tokens: int

    @property
    def activation_bytes(self) -> float:
        """One fp16 activation of the whole image."""
        return 2.0 * self.image_tokens * self.model.arch.hidden_size


class Strategy(ABC):
    """One parallel strategy; a module under ``simulator/strategies`` subclasses it once."""

    name: ClassVar[str] = ""
    """Registry key (the axis for every strategy that has one)."""
    axis: ClassVar[str | None] = None
    """The ``Degrees`` field; None for the degenerate serial strategy, which has no degree."""
    rank_order: ClassVar[int] = 0
    """Position in the rank order, outermost (smallest) first; see :mod:`simulator.rank_groups`."""
    description: ClassVar[str] = ""
    """One line: becomes the ``Degrees`` field's description."""
    title: ClassVar[str] = ""
    """The strategy's name in prose (``Ulysses``)."""
    role: ClassVar[Role] = "stage"
    max_degree: ClassVar[int | None] = None
    shards_heads: ClassVar[bool] = False
    """Splits the attention heads: heads must divide by the product of every such degree."""
    splits_sequence: ClassVar[bool] = False
    """Splits the tokens and K/V into equal shards: the product of every such degree must divide
    the tokens of the smallest patch."""
    exclusive: ClassVar[bool] = False
    """Combines only with the replica axes."""
    stale: ClassVar[bool] = False
    """Attends to one-step-old activations after warm-up, so a plan needs warm-up steps."""
    xdit_flag: ClassVar[str | None] = None
    """xDiT's command-line flag for this axis (``--ulysses_degree``), or None where xDiT has none;
    a flag not ending in ``_degree`` is a switch meaning ``max_degree`` (``--use_cfg_parallel``).
    :mod:`planner.xdit` translates plans with it."""
    runtime_module: ClassVar[str | None] = None
    """Dotted path of the pfrun module that executes this axis, or None."""
    not_executable: ClassVar[str] = ""
    """Why pfrun cannot execute it (one line), when ``runtime_module`` is None."""
    runtime_attention: ClassVar[frozenset[str]] = ATTENTION_KINDS
    """Attention kinds (``model.arch.attention``) the runtime module handles."""
    runtime_needs: ClassVar[str | None] = None
    """The family-adapter capability its runtime module needs (``sequence_attention``,
    ``patch_kv_attention``, ``head_sharding``); a family spec's ``runtime_lacks`` names the ones
    its adapter does not have yet, so neither side names the other."""

    @abstractmethod
    def rules(self, degree: int, model: ModelPreset, rows: int) -> list[str]:
        """What this degree alone breaks, beyond the generic rules (heads, ``max_degree``); ``rows``
        may be 0 when the resolution is invalid."""

    @abstractmethod
    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        """The per-rank layer shape of ``shape`` shared by ``degree`` ranks along this axis."""

    @abstractmethod
    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        """The collectives a stage pass needs along this axis (none for replica and pipeline axes:
        their traffic is the schedule's point-to-point sends)."""

    def extra_compute_s(self, work: PassWork, degree: int, local_query_tokens: int,
                        price: Callable[..., float]) -> float:
        """Compute a pass needs beyond its layers' own time because of this axis (Ring's per-hop
        merges); ``price(method, *args)`` asks the cost model's optional methods. 0 by default."""
        return 0.0

    @abstractmethod
    def buffers(self, ctx: MemoryContext, degree: int) -> MemoryTerms:
        """Buffers this axis adds to a device (its division of parameters and activations is its shard)."""

    @abstractmethod
    def traffic_bytes(self, degree: int, ctx: TrafficContext) -> float:
        """Rough bytes one rank sends per step along this axis: the placement puts the heaviest
        axis on the nearest devices (docs/references.md §1 cost table)."""

    def runtime_limits(self, degree: int, facts: PlanFacts, model: ModelPreset) -> str | None:
        """Why pfrun's module cannot run this axis of the plan (one line, naming the field), or None."""
        refused = getattr(model.arch.spec, "runtime_lacks", {}).get(self.runtime_needs or "")
        if degree > 1 and refused:
            return f"degrees.{self.axis}: {self.title} on {model.family} ({model.name}) is not executed: {refused}"
        if degree > 1 and model.arch.attention not in self.runtime_attention:
            return (f"degrees.{self.axis}: {self.title} on {model.family} ({model.name}) is not executed: "
                    f"{model.arch.attention} attention; it runs {', '.join(sorted(self.runtime_attention))} "
                    "attention")
        return None

    def patch_options(self, degree: int, rows: int) -> list[int]:
        """Patch counts worth searching (the pipeline axis' only; 1 for the others)."""
        return [1]

    def images_per_generation(self, degree: int) -> int:
        """Images a generation of the plan makes along this axis (data parallel: one per replica)."""
        return 1


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


def band_limits(axis: str, short: str, degree: int, facts: PlanFacts, *, pipelined: str) -> str | None:
    """The limits of pfrun's band loop for DistriFusion: one loop per rank, so no PipeFusion
    around it (``pipelined`` says so in the strategy's words), and at least one token row per
    band (uneven bands run: the larger first, padded to the largest for each gather)."""
    if facts.pipelined:
        return f"degrees.{axis}: {pipelined}"
    if facts.rows and facts.rows < degree:
        return f"degrees.{axis}: the {facts.rows} token rows cannot give each of {degree} ranks a band"
    return None


def sequence_limits(axis: str, short: str, facts: PlanFacts) -> str | None:
    """The limits of pfrun's sequence-parallel hook (Ulysses, Ring, both: USP): every rank of
    their product ``u·r`` holds an equal share of the tokens of the image and, inside PipeFusion
    stages, of every patch (as xDiT splits them: a 1-row patch splits across ranks too). The
    plan rules check the smallest patch only (:func:`simulator.degree_rules.sequence_violations`);
    the image and a patch one row larger are checked here. DistriFusion and tensor parallel
    combine with them in no valid plan."""
    from simulator.strategies import STRATEGIES  # the registry imports this module

    sp = 1
    for s in STRATEGIES:
        if s.splits_sequence and s.axis:
            sp *= facts.degrees.get(s.axis, 1)
    if not facts.pipelined:
        if facts.rows * facts.cols % sp:
            return (f"degrees.{axis}: the {facts.rows * facts.cols} image tokens do not split into {sp} equal "
                    f"bands (pfrun's {short} needs equal bands)")
        return None
    base, extra = divmod(facts.rows, max(facts.patches, 1))
    uneven = sorted(n for n in {facts.rows, base, base + 1 if extra else base} if n * facts.cols % sp)
    if uneven:
        return (f"patches: the {uneven[0] * facts.cols} tokens of a {uneven[0]}-row PipeFusion patch do not "
                f"split into the {sp} ranks of degrees.{axis} (pfrun's {short} inside PipeFusion gives each "
                "rank an equal share of a patch's tokens)")
    return None


class SharesNothing(Strategy):
    """A strategy whose ranks each run the whole pass on their own (serial, data replicas):
    no shard, no collectives, no buffers, no traffic to place. Its rules are its own."""

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return shape

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        return []

    def buffers(self, ctx: MemoryContext, degree: int) -> MemoryTerms:
        return MemoryTerms()

    def traffic_bytes(self, degree: int, ctx: TrafficContext) -> float:
        return 0.0


class SequenceShard(Strategy):
    """Sequence parallelism (Ulysses, Ring): each rank keeps 1/degree of the query tokens.

    The text tokens of joint-attention models are split the same way when the shape
    counts them separately.
    """

    splits_sequence = True
    runtime_needs = "sequence_attention"

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        text = shape.text_query_tokens
        return replace(shape, query_tokens=ceil_div(shape.query_tokens, degree),
                       text_query_tokens=None if text is None else ceil_div(text, degree))

    def buffers(self, ctx: MemoryContext, degree: int) -> MemoryTerms:
        """The collective's buffer: ``2·b·q·h``."""
        return MemoryTerms(receive_buffers=2 * ctx.batch * ctx.query_tokens * ctx.hidden * ctx.dtype_bytes)


S = TypeVar("S", bound=type)


class Registry:
    """Name → strategy; refuses duplicates (names, axes, rank positions) and lists the valid names on a miss."""

    def __init__(self) -> None:
        self._items: dict[str, Strategy] = {}
        self._frozen = False
        self._ordered: tuple[Strategy, ...] | None = None
        """The axis strategies in rank order, sorted once per registration (a search asks ~10^5 times)."""

    def register(self, cls: S) -> S:
        """Add ``cls`` (a :class:`Strategy` subclass); usable as a class decorator."""
        name = getattr(cls, "name", "")
        if self._frozen:
            raise SimulatorError(f"strategy {name!r}: this registry is frozen; build a fresh one")
        if not name:
            raise SimulatorError(f"strategy {cls.__name__} has no name")
        if name in self._items:
            raise SimulatorError(f"strategy {name!r} is registered twice "
                                 f"({type(self._items[name]).__name__} and {cls.__name__})")
        try:
            strategy = cls()
        except TypeError as exc:  # an abstract method left out
            raise SimulatorError(f"strategy {name!r} is incomplete: {exc}") from None
        self._check(strategy)
        self._items[name] = strategy
        self._ordered = None
        return cls

    def _check(self, new: Strategy) -> None:
        if new.runtime_module is None and not new.not_executable.strip():
            raise SimulatorError(f"strategy {new.name!r} has no runtime_module and no not_executable reason")
        if new.axis is None:
            return
        if not new.description:
            raise SimulatorError(f"strategy {new.name!r} has no description")
        for old in self._items.values():
            if old.axis == new.axis:
                raise SimulatorError(f"axis {new.axis!r} is claimed by {old.name!r} and {new.name!r}")
            if old.axis is not None and old.rank_order == new.rank_order:
                raise SimulatorError(f"rank position {new.rank_order} is claimed by {old.name!r} and {new.name!r}")

    def frozen(self) -> Registry:
        """This registry, refusing further registrations (the package's shared one)."""
        self._frozen = True
        return self

    def get(self, name: str) -> Strategy:
        try:
            return self._items[name]
        except KeyError:
            raise SimulatorError(f"unknown strategy {name!r}; strategies: {', '.join(self.names())}",
                                 field="strategy") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __iter__(self) -> Iterator[Strategy]:
        """Every strategy that has an axis, in rank order (outermost first)."""
        if self._ordered is None:
            self._ordered = tuple(sorted((s for s in self._items.values() if s.axis is not None),
                                         key=lambda s: s.rank_order))
        return iter(self._ordered)

    def axes(self) -> tuple[str, ...]:
        """Every axis in rank order: the ``Degrees`` fields and :data:`simulator.rank_groups.AXES`."""
        return tuple(s.axis for s in self if s.axis is not None)

    def by_axis(self, axis: str) -> Strategy:
        for s in self:
            if s.axis == axis:
                return s
        raise SimulatorError(f"unknown axis {axis!r}; axes: {', '.join(self.axes())}", field="degrees")

    def with_role(self, role: Role) -> list[Strategy]:
        return [s for s in self if s.role == role]

    @property
    def pipeline(self) -> Strategy:
        """The one pipeline strategy."""
        found = self.with_role("pipeline")
        if len(found) != 1:
            raise SimulatorError(f"expected one pipeline strategy, found {[s.name for s in found]}")
        return found[0]

    def active(self, degrees: Mapping[str, int]) -> list[tuple[Strategy, int]]:
        """``(strategy, degree)`` of every axis above 1, in rank order."""
        return [(s, degrees.get(s.axis, 1)) for s in self if degrees.get(s.axis, 1) > 1]  # type: ignore[arg-type]

    def decorator(self) -> Callable[[S], S]:
        return self.register


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
