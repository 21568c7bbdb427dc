"""What a transformer's diffusers config implies: dimensions, block kinds, parameter counts.

The planner needs parameter bytes per pipeline stage and the simulator needs the shape of
every block, without importing torch or diffusers. Each family's module in
:mod:`profiles.families` reads its diffusers config and counts parameters from the
dimensions with closed forms that mirror the diffusers modules one by one
(``tests/profiles/test_architecture.py`` checks them against models built on the meta
device); this module holds what they share: the :class:`Architecture` they return and the
checks every config goes through.

Notation in the formulas: ``h`` hidden size, ``d`` head dim, ``f`` feed-forward inner
width, ``c`` text (cross-attention) width, ``p`` patch size, ``lin(a, b) = a·b + b``
(a linear layer with bias).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol

from profiles.errors import InputError

AttentionKind = Literal["cross", "joint", "self"]


class BlockFormulas(Protocol):
    """What a family says of one block kind (:class:`profiles.families.spec.BlockKind` is one).

    A protocol, so this module need not import the family specs that build on it.
    """

    name: str
    flops: Callable[..., int]
    attention_flops: Callable[..., int]
    text_only_flops: Callable[..., tuple[int, int]]
    joint: bool
    long_skip: bool
    tensor_all_reduces: tuple[int, int, int, int]


class BlockCatalog(Protocol):
    """The family that built an architecture, as far as the cost formulas need it."""

    def find_block(self, kind: str) -> BlockFormulas | None: ...


def lin(a: int, b: int) -> int:
    """Parameters of ``nn.Linear(a, b)`` with bias."""
    return a * b + b


@dataclass(frozen=True)
class BlockGroup:
    """``count`` consecutive transformer blocks of one kind, in model order."""

    kind: str
    count: int
    params: int


@dataclass(frozen=True)
class Architecture:
    """Dimensions and parameter counts of one transformer, derived from its config."""

    family: str
    hidden_size: int
    heads: int
    head_dim: int
    ffn_inner: int
    patch_size: int
    """Latent pixels per token side (Flux packs 2×2 latents into one token: 2)."""
    latent_channels: int
    attention: AttentionKind
    text_width: int
    """Width of the text tokens the attention layers see (0 for class-conditioned DiT)."""
    blocks: tuple[BlockGroup, ...]
    embed_params: int
    """Patch / text / timestep embeddings and other parameters outside the blocks (stage 0)."""
    final_params: int
    """Output norm and projection (last stage)."""
    duplicated_params: int = 0
    """Parameters diffusers stores once per block but the original model shares (DiT)."""
    spec: BlockCatalog | None = field(default=None, compare=False, repr=False)
    """The family that built this (set by :meth:`FamilySpec.architecture`): its block kinds' formulas."""

    @property
    def layers(self) -> int:
        return sum(group.count for group in self.blocks)

    @property
    def block_params(self) -> int:
        return sum(group.count * group.params for group in self.blocks)

    @property
    def params(self) -> int:
        return self.embed_params + self.block_params + self.final_params

    def block_kinds(self) -> list[str]:
        """The kind of every block, in model order (index = layer number)."""
        return [group.kind for group in self.blocks for _ in range(group.count)]

    def layer_params(self) -> list[int]:
        return [group.params for group in self.blocks for _ in range(group.count)]

    def tensor_all_reduces(self, kinds: list[str] | tuple[str, ...]) -> tuple[int, int, int, int] | None:
        """The blocks' tensor-parallel all-reduces by kind of call
        (:attr:`profiles.families.spec.BlockKind.tensor_all_reduces`), summed over ``kinds``; None
        when the family is unknown or a kind is not its own."""
        if self.spec is None:
            return None
        total = [0, 0, 0, 0]
        for kind in kinds:
            found = self.spec.find_block(kind)
            if found is None:
                return None
            total = [a + b for a, b in zip(total, found.tensor_all_reduces)]
        return (total[0], total[1], total[2], total[3])

    def block_kind(self, kind: str) -> BlockFormulas:
        """The formulas of block kind ``kind`` (an :class:`InputError` for a kind no family here has)."""
        found = self.spec.find_block(kind) if self.spec is not None else None
        if found is None:
            raise InputError(f"no FLOP formula for layer kind {kind!r}", field="kind")
        return found


def require(config: dict[str, Any], key: str, family: str) -> Any:
    """``config[key]``, or an :class:`InputError` naming the family when it is missing."""
    if config.get(key) is None:
        raise InputError(f"the {family} config has no {key!r} (a positive integer)", field=f"config.{key}")
    return config[key]


COMMON_SIZE_KEYS = ("num_attention_heads", "attention_head_dim", "num_layers", "patch_size", "in_channels",
                    "out_channels", "sample_size")
"""Config keys that are sizes in every family; a family adds its own (:attr:`FamilySpec.size_keys`)."""


def check_sizes(config: dict[str, Any], size_keys: tuple[str, ...], ratio_keys: tuple[str, ...] = ()) -> None:
    """Refuse a size that is not a positive integer, or a ratio that is not a positive number."""
    for key in dict.fromkeys((*COMMON_SIZE_KEYS, *size_keys)):
        value = config.get(key)
        # a video patch is (frames, rows, cols): a list of sizes (Wan's ``patch_size: [1, 2, 2]``)
        values = value if isinstance(value, (list, tuple)) and value else [value]
        if value is not None and any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise InputError(f"expected a positive integer, got {value!r}", field=f"config.{key}")
    for key in ratio_keys:
        ratio = config.get(key)
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0):
            raise InputError(f"expected a positive number, got {ratio!r}", field=f"config.{key}")
