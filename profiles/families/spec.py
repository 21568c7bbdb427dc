"""What a model family is, without torch: the one object the catalog, the cost models and the simulator ask.

A :class:`FamilySpec` holds everything pfplan knows about a family of diffusion
transformers short of running one: how its diffusers config becomes an
:class:`~profiles.catalog.architecture.Architecture` (dimensions, block kinds, parameter counts),
the FLOP formulas of each :class:`BlockKind`, how an image becomes tokens, what the
transformer outputs per token, and, as data read from diffusers' pipeline for the family,
its text encoders, VAE and guidance defaults. Each family writes one in its own module of
:mod:`profiles.families`; the runtime's adapter for the family (``runtime/families/``) is
keyed by the same :attr:`FamilySpec.name`.

FLOP formulas take the architecture and the :class:`Tokens` of one call and return the
count for one image and the whole (unsharded) block; :mod:`profiles.costs.flops` multiplies by
the batch and divides by the tensor-parallel shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from profiles.catalog.architecture import Architecture, AttentionKind, check_sizes
from profiles.errors import InputError


@dataclass(frozen=True)
class Tokens:
    """Token counts one block call sees, per image (the symbols of :mod:`profiles.costs.flops`)."""

    query: int
    """``q``: image query tokens."""
    kv: int
    """``k``: image key/value tokens."""
    text: int
    """``t``: text tokens attended."""
    text_query: int
    """``tq``: text tokens whose projections run here (joint attention under sequence parallelism)."""


BlockFormula = Callable[[Architecture, Tokens], int]
TextOnlyFormula = Callable[[Architecture, Tokens], tuple[int, int]]


def no_text_only(arch: Architecture, tokens: Tokens) -> tuple[int, int]:
    """Blocks with no matmul on text tokens alone: ``(0, 0)``."""
    return 0, 0


@dataclass(frozen=True)
class BlockKind:
    """One kind of transformer block and the formulas the cost models price it by."""

    name: str
    flops: BlockFormula
    """Matmul FLOPs of one forward (see the table in :mod:`profiles.costs.flops`)."""
    attention_flops: BlockFormula
    """The part of :attr:`flops` that consumes the block's image K/V (what can hide a K/V transfer)."""
    text_only_flops: TextOnlyFormula = no_text_only
    """``(FLOPs, rows)`` of the matmuls that run on text tokens alone, whatever the image queries."""
    joint: bool = False
    """Text tokens run through the projections and attention beside the image tokens (MMDiT)."""
    long_skip: bool = False
    """The block also reads an earlier block's output (HunyuanDiT's U-Net-like skips)."""
    tensor_all_reduces: tuple[int, int, int, int] = (2, 0, 0, 0)
    """All-reduces of one forward of this block in pfrun's tensor-parallel loop, one per row-split
    Linear (:func:`runtime.families.base.default_tensor_plan` or the family's own plan) and per
    head-sharded RMS norm, by what the call carries: ``(query tokens × hidden, text tokens ×
    hidden, query and text tokens × hidden, one sum of squares per query token)``. Self-attention
    and MLP: 2; a cross-attention adds one; a joint block's text projection and text MLP add two
    on the text tokens; a single-stream block (Flux's ``proj_out``) has one over both streams.
    FLUX.2 (no tensor plan in pfrun) keeps the default. ``tests/runtime/test_tensor_all_reduces.py``
    counts them on each tiny preset's blocks."""


@dataclass(frozen=True)
class TextEncoder:
    """One prompt encoder of the family's diffusers pipeline."""

    kind: str
    """E.g. ``T5-XXL``, ``CLIP-L``, ``CLIP-G``, ``mT5``, ``BERT``."""
    width: int | None
    """Width of the embeddings it hands the transformer: the default of :attr:`width_key` in the
    diffusers transformer class, None where diffusers has no default (the checkpoint's config says)."""
    max_tokens: int
    """The pipeline's default maximum sequence length for it."""
    width_key: str | None = None
    """The transformer config key that holds that width."""
    pooled_only: bool = False
    """Only its pooled embedding reaches the transformer (Flux's CLIP), not its tokens."""
    source: str = ""


@dataclass(frozen=True)
class Vae:
    """The latent space: pixels per latent pixel and latent channels."""

    scale_factor: int | None
    """Image pixels per latent pixel as the pipeline computes it (None where it does not)."""
    latent_channels: int | None
    """None where diffusers takes it from the model's config and has no default."""
    source: str = ""
    decode_flops_per_pixel_frame: float | None = None
    """Matmul/conv FLOPs of the VAE decoder per output pixel of each frame (None: not counted)."""
    diffusers_class: str = "AutoencoderKL"
    """The pipeline's VAE class (``AutoencoderKLWan``, ``AutoencoderKLHunyuanVideo``: 3-D video decoders,
    priced by :data:`profiles.costs.components.VIDEO_VAES`)."""


@dataclass(frozen=True)
class Guidance:
    """Classifier-free guidance as the diffusers pipeline does it by default."""

    uses_cfg: bool
    """The pipeline's default guidance doubles the batch (cond + uncond)."""
    default_scale: float | None
    """The pipeline's default ``guidance_scale`` (for Flux: the distilled guidance it embeds)."""
    source: str = ""
    embedded: bool = False
    """``guidance_scale`` is a model input (guidance-distilled, FLUX.2), not a CFG scale."""


def patch_grid(arch: Architecture, latent_rows: int, latent_cols: int) -> tuple[int, int]:
    """Square ``patch × patch`` latent patches, one token each: (rows, cols) of tokens."""
    return latent_rows // arch.patch_size, latent_cols // arch.patch_size


def patch_outputs(config: dict[str, Any], arch: Architecture) -> int:
    """Patch area × the config's output channels (default: its input channels)."""
    return arch.patch_size ** 2 * int(config.get("out_channels") or config.get("in_channels", arch.latent_channels))


RUNTIME_CAPABILITIES = frozenset({"sequence_attention", "patch_kv_attention", "head_sharding"})
"""What a family's runtime adapter may lack (:attr:`FamilySpec.runtime_lacks`); each strategy
that needs one names it (``Strategy.runtime_needs``)."""


@dataclass(frozen=True)
class FamilySpec:
    """Everything pfplan knows about one model family without torch (see the module docstring)."""

    name: str
    diffusers_class: str
    """The diffusers transformer class (``_class_name`` of its ``config.json``)."""
    pipeline_class: str
    """The diffusers pipeline class that runs it."""
    build: Callable[[dict[str, Any]], Architecture]
    """Config → :class:`Architecture` (closed-form parameter counts); called through :meth:`architecture`."""
    blocks: tuple[BlockKind, ...]
    attention: AttentionKind
    text_encoders: tuple[TextEncoder, ...]
    vae: Vae
    guidance: Guidance
    preset_defaults: Callable[[dict[str, Any]], dict[str, Any]]
    """ModelPreset fields a diffusers ``config.json`` does not give (text tokens, CFG, scheduler...)."""
    output_values_per_token: Callable[[dict[str, Any], Architecture], int] = patch_outputs
    """Values the transformer outputs per token (the noise prediction's size)."""
    token_grid: Callable[[Architecture, int, int], tuple[int, int]] = patch_grid
    """Latent (rows, cols) → token (rows, cols); PipeFusion patches are cut along token rows."""
    usual_dtype: str = "fp16"
    """The dtype the family's pipeline is usually loaded in (diffusers' docs examples); what the
    memory model assumes for its text encoders (T5 in fp16 keeps its ``wo`` in fp32)."""
    size_keys: tuple[str, ...] = ()
    """Config keys beyond :data:`~profiles.catalog.architecture.COMMON_SIZE_KEYS` that must be positive integers."""
    ratio_keys: tuple[str, ...] = ()
    """Config keys that must be positive numbers."""
    duplicated_params_note: str = "diffusers stores some shared parameters in every block"
    patch_embed: str = "whole"
    """How pfrun's adapter embeds a share of the image (a PipeFusion patch, a sequence-parallel or
    DistriFusion band): ``whole``, the patch embedding of the whole latent cut to the share (its
    positional embedding depends on the whole grid), so every share pays the whole image's embed;
    ``rows``, only the share's latent rows (a per-token projection, positions applied in the blocks).
    ``tests/runtime/test_family_patch_embed.py`` checks it against the runtime adapters."""
    runtime_lacks: Mapping[str, str] = field(default_factory=dict)
    """Capabilities pfrun's adapter for this family does not have yet, each with why:
    ``sequence_attention`` (a sequence-parallel processor), ``patch_kv_attention`` (a
    patch-parallel K/V processor), ``head_sharding`` (a tensor-parallel plan). Each strategy
    names the capability it needs (``Strategy.runtime_needs``), so the runnable check refuses
    it for this family before any rank starts."""
    """Why :attr:`Architecture.duplicated_params` is not 0, for ``pfplan models``."""

    def __post_init__(self) -> None:
        if self.patch_embed not in ("whole", "rows"):
            raise ValueError(f"{self.name}: patch_embed must be 'whole' or 'rows', not {self.patch_embed!r}")
        unknown = set(self.runtime_lacks) - RUNTIME_CAPABILITIES
        if unknown:
            raise ValueError(f"{self.name}: runtime_lacks names unknown capabilities {sorted(unknown)}; "
                             f"known: {sorted(RUNTIME_CAPABILITIES)}")

    def architecture(self, config: dict[str, Any]) -> Architecture:
        """The :class:`Architecture` a diffusers config of this family describes."""
        check_sizes(config, self.size_keys, self.ratio_keys)
        try:
            arch = self.build(config)
        except (TypeError, ValueError) as exc:  # a value of a type no check above knows about
            raise InputError(f"the {self.name} config has a value of the wrong type ({exc})", field="config") from None
        return replace(arch, spec=self)

    def find_block(self, kind: str) -> BlockKind | None:
        return next((block for block in self.blocks if block.name == kind), None)

    def is_joint(self, kind: str) -> bool:
        """Whether block kind ``kind`` runs its text tokens beside the image tokens."""
        block = self.find_block(kind)
        return block is not None and block.joint
