"""The interface of a family's runtime adapter, the step context it builds, and the registry.

Each family's diffusers transformer differs from the others in small ways the runtime and
the profiler must know: the keyword arguments of its ``forward``, how its timestep is
scaled, where its self-attention modules sit and which kind each is, which conditioning it
computes once per step, how its patch embedding and output layer work, what a PipeFusion
patch must carry from stage to stage (SD3 and Flux: the text stream; HunyuanDiT: its long
skips), and how its pipeline encodes prompts. A :class:`FamilyAdapter` says all of that
for one family; :mod:`runtime.staged_model`, :mod:`runtime.attention.stale_kv`,
:mod:`runtime.attention.ulysses`, :mod:`runtime.model_inputs`, :mod:`runtime.text_encoding` and
the profiler read it instead of naming families.

Adapters are stateless: the model, its token grid and the K/V state travel in the
:class:`~runtime.staged_model.StagedModel` passed to the staged calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Protocol

import torch

from profiles.errors import InputError
from profiles.catalog.models import ModelPreset
from runtime.conditioning import Branch, Conditioning
from runtime.errors import UnrunnablePlan

ProcessorKind = Literal["self", "joint", "flux", "wan", "qwen_image", "hunyuan_video", "flux2_single"]
"""Which attention processor a module takes (not the spec's ``attention``, which says how text
conditions the image: PixArt's is "cross", its processor kind "self").
``self``: image self-attention (``attn1`` of PixArt, DiT, HunyuanDiT; rotary optional);
``joint``: SD3's [image; text] attention with the text projected by ``add_*_proj``;
``flux``: Flux's attention (double blocks: text as added K/V; single blocks: one [text; image] sequence);
``wan``, ``qwen_image``, ``hunyuan_video``, ``flux2_single``: kinds one family has, its adapter's :meth:`FamilyAdapter.own_stale_processors` serve them."""


@dataclass(frozen=True)
class TensorSplit:
    """One ``nn.Linear`` of a block split across the ranks of a tensor-parallel group.

    ``column``: each rank keeps ``1/t`` of the outputs (Q/K/V, the MLP's up projection);
    ``row``: ``1/t`` of the inputs, the partial outputs summed by an all-reduce (the output
    projections). ``groups`` are the proportions of packed blocks along the split dimension
    (GEGLU's ``[1, 1]`` value and gate, Flux's ``[dim, mlp]`` input of ``proj_out``): each
    block is split on its own, so a rank's slice lines up with its heads and MLP columns.
    """

    parent: Any
    """The module holding the Linear (an ``nn.Sequential`` / ``ModuleList`` for ``to_out[0]``)."""
    name: str
    """Its attribute name (an index, as a string, in a Sequential)."""
    kind: Literal["column", "row"]
    groups: tuple[int, ...] = (1,)


@dataclass
class TensorPlan:
    """How one block splits for tensor parallelism: the Linears, and the attention modules whose
    ``heads`` become ``heads / t`` (diffusers' processors reshape by ``attn.heads``)."""

    splits: list[TensorSplit]
    attentions: list[Any]
    norms: list[tuple[Any, str]] = field(default_factory=list)
    """``(parent, name)`` of each RMS norm over a column-split width (Wan's ``norm_q`` / ``norm_k``
    span all heads): sharded to the rank's columns, the sum of squares all-reduced over the group."""


_GATED = ("GEGLU", "SwiGLU")
"""diffusers' FeedForward activations whose projection packs a value and a gate."""


def default_tensor_plan(block: Any) -> TensorPlan:
    """The Megatron split of a diffusers block: every attention module (self, cross, joint)
    column-splits ``to_q/k/v`` and ``add_q/k/v_proj`` and row-splits ``to_out[0]`` and
    ``to_add_out``; every ``FeedForward`` column-splits ``net[0].proj`` and row-splits ``net[2]``.
    Norms, AdaLN modulations and other Linears stay whole (replicated)."""
    from diffusers.models.attention import FeedForward

    splits: list[TensorSplit] = []
    attentions: list[Any] = []
    for module in block.modules():
        if hasattr(module, "heads") and hasattr(module, "to_q"):
            attentions.append(module)
            for name in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"):
                if getattr(module, name, None) is not None:
                    splits.append(TensorSplit(module, name, "column"))
            if getattr(module, "to_add_out", None) is not None:
                splits.append(TensorSplit(module, "to_add_out", "row"))
            if getattr(module, "to_out", None) is not None:
                splits.append(TensorSplit(module.to_out, "0", "row"))
        elif isinstance(module, FeedForward):
            gated = type(module.net[0]).__name__ in _GATED
            splits.append(TensorSplit(module.net[0], "proj", "column", (1, 1) if gated else (1,)))
            splits.append(TensorSplit(module.net, "2", "row"))
    return TensorPlan(splits, attentions)


class UnknownFamily(UnrunnablePlan):
    """No runtime adapter is registered under this family name."""


@dataclass
class StepContext:
    """What every block of one step shares (timestep embedding, projected text, rotary)."""

    batch: int
    text: torch.Tensor | None = None
    """The text stream entering block 0 (joint families) or the cross-attention context (PixArt)."""
    text_mask: torch.Tensor | None = None
    temb: Any = None
    temb_extra: Any = None
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    class_labels: torch.Tensor | None = None


def drop_learned_sigma(preset: ModelPreset, out: torch.Tensor) -> torch.Tensor:
    """The first ``latent_channels`` channels (DiT and HunyuanDiT also predict a variance)."""
    c = preset.arch.latent_channels
    return out[:, :c] if out.shape[1] > c else out


def image_size_px(preset: ModelPreset, latent_rows: int, latent_cols: int) -> tuple[int, int]:
    """Pixel height and width of a latent of ``latent_rows × latent_cols``."""
    return latent_rows * preset.vae_scale_factor, latent_cols * preset.vae_scale_factor


def unpatchify(hidden: torch.Tensor, n_rows: int, cols: int, p: int) -> torch.Tensor:
    """(B, n_rows·cols, p·p·C) tokens → (B, C, n_rows·p, cols·p), as diffusers' forwards unpatchify."""
    c_out = hidden.shape[-1] // (p * p)
    hidden = hidden.reshape(-1, n_rows, cols, p, p, c_out)
    return torch.einsum("nhwpqc->nchpwq", hidden).reshape(-1, c_out, n_rows * p, cols * p)


def batch_of(branch: Branch) -> int:
    """The batch of a branch (prompt embeddings, or class labels for DiT)."""
    ref = branch.prompt_embeds if branch.prompt_embeds is not None else branch.class_label
    return ref.shape[0]


class StagedView(Protocol):
    """What an adapter's staged calls read of the staged model (:class:`runtime.staged_model.StagedModel`).

    A protocol, so the adapters need not import the staged model that looks them up.
    """

    preset: ModelPreset
    model: Any
    rows: int
    cols: int
    p: int
    blocks: list[Any]

    @property
    def width(self) -> int: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def image_size_px(self) -> tuple[int, int]: ...

    def tokens(self, r0: int, r1: int) -> tuple[int, int]: ...


class FamilyAdapter(ABC):
    """Everything family-specific the runtime and the profiler do with a family's torch model."""

    name: ClassVar[str] = ""
    """The family's name, as ``ModelPreset.family`` and ``profiles/families/`` spell it."""
    processor_kinds: ClassVar[frozenset[str]]
    """The processor kinds of :meth:`attention_sites` this family's blocks have (see :data:`ProcessorKind`)."""
    carries_text: ClassVar[bool] = False
    """Joint-attention families send the text stream along with each patch (SD3, Flux)."""
    forward_may_fail_after_blocks: ClassVar[bool] = False
    """The model's own forward may raise after its output layer on a non-square patch (DiT's
    unpatchify assumes a square grid); the profiler then keeps the timings it took."""

    # --- the model's structure ---

    def blocks(self, model: Any) -> list[Any]:
        """Every transformer block in model order."""
        return list(model.transformer_blocks)

    @abstractmethod
    def attention_sites(self, block: Any) -> list[tuple[ProcessorKind, Any]]:
        """The block's image self- (or joint) attention modules and their kinds; cross-attention
        to text is not listed (it keeps diffusers' processor)."""

    def single_block_overrides(self) -> dict[str, Any]:
        """Config overrides that keep one block of every kind (the profiler builds only these)."""
        return {"num_layers": 1}

    def output_module(self, model: Any) -> Any:
        """The module whose end marks the end of the final layer (the profiler's timing)."""
        return model

    def tensor_plan(self, block: Any) -> TensorPlan:
        """How ``block`` splits across tensor-parallel ranks (:func:`default_tensor_plan`: attention
        modules and FeedForwards; a family with other Linears in the block's main path overrides)."""
        return default_tensor_plan(block)

    def own_stale_processors(self) -> Mapping[str, type]:
        """Stale-K/V processors of the processor kinds only this family has (Wan's RMS-across-heads
        self-attention, Qwen-Image's [text; image] attention with complex rotary), by kind; each
        takes the :class:`~runtime.attention.kv_state.KVState` as the shared ones do."""
        return {}

    def own_sequence_processors(self) -> Mapping[str, type]:
        """Sequence-parallel processors (Ulysses, Ring, USP and their PipeFusion hybrids) of the
        processor kinds only this family has, by kind; each takes a
        :class:`~runtime.attention.sequence.SequenceAttention` core and the
        :class:`~runtime.attention.kv_state.KVState`, as :mod:`runtime.attention.sequence`'s do."""
        return {}

    def drop_block(self, block: Any, index: int, *, last_stage: bool) -> None:
        """Free the weights of a block another PipeFusion stage runs."""
        block.to("meta")

    # --- inputs of the whole forward ---

    def random_branch(self, preset: ModelPreset, gen: torch.Generator, *, null: bool) -> Branch:
        """Seeded stand-in embeddings (batch 1) with the shapes the family's text encoders produce."""
        b = Branch(prompt_embeds=torch.randn(1, preset.text_tokens, preset.text_embed_dim, generator=gen))
        if preset.pooled_embed_dim:
            b.pooled_embeds = torch.randn(1, preset.pooled_embed_dim, generator=gen)
        return b

    def timestep(self, t: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
        """The timestep the family's forward expects, one per batch item."""
        return t.reshape(()).expand(batch)

    @abstractmethod
    def transformer_kwargs(self, preset: ModelPreset, latent: torch.Tensor, t: torch.Tensor,
                           branch: Branch) -> dict[str, Any]:
        """Keyword arguments of the whole transformer's forward for a (B, C, H, W) latent
        (``branch`` holds batch-B conditioning; it is moved to the latent's device and dtype)."""

    def noise_from_output(self, preset: ModelPreset, out: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """The forward's output as a (B, C, H, W) noise prediction."""
        return drop_learned_sigma(preset, out)

    def embed_widths(self, preset: ModelPreset) -> dict[str, int | None]:
        """Width of each :class:`Branch` field a ``--prompt-embeds`` file must match."""
        return {"prompt_embeds": preset.text_embed_dim, "pooled_embeds": preset.pooled_embed_dim}

    def encode_prompt(self, pipe: Any, preset: ModelPreset, prompt: str, negative: str) -> Conditioning:
        """Conditioning from the folder's pipeline (loaded without transformer and VAE), on CPU,
        with the arguments the pipeline's ``__call__`` passes to its ``encode_prompt``."""
        raise InputError(f"encoding prompts with the folder's text encoders is not implemented for {self.name}; "
                         f"pass --prompt-embeds", field="--prompt")

    # --- the pipeline's own preparation (runtime.pipeline_prep, runtime.sampling) ---

    pipeline_class: ClassVar[str] = ""
    """The diffusers pipeline class of the family (a folder's ``model_index.json`` may name another)."""
    scales_model_input: ClassVar[bool] = True
    """Whether the pipeline calls ``scheduler.scale_model_input`` before each forward (SD3, Flux: no)."""
    steps_scaled_input: ClassVar[bool] = False
    """The pipeline steps the latent ``scale_model_input`` returned (DiTPipeline overwrites its latent with it)."""
    distilled_guidance: ClassVar[bool] = False
    """The guidance scale is an input of the transformer (Flux's guidance embedding), not CFG."""

    def timestep_recipe(self, pipe: Any, steps: int, latent_shape: tuple[int, ...]) -> dict[str, Any]:
        """How the pipeline sets the scheduler's timesteps: :class:`runtime.sampling.Sampling` fields
        (``timestep_kwargs`` for ``retrieve_timesteps``, ``set_timesteps_only``, ``begin_index``)."""
        return {}

    def prepare_latents(self, pipe: Any, height: int, width: int, generator: Any, dtype: Any,
                        device: Any) -> torch.Tensor:
        """The initial (1, C, H, W) latent as the pipeline draws it (``init_noise_sigma`` applied where it applies it)."""
        return pipe.prepare_latents(1, pipe.transformer.config.in_channels, height, width, dtype, device, generator)

    def generation_size(self, pipe: Any, height: int, width: int, binning: bool) -> tuple[int, int]:
        """The size the pipeline generates at for a requested ``height × width`` (resolution binning)."""
        return height, width

    # --- the staged forward (see runtime.staged_model) ---

    @abstractmethod
    def context(self, staged: StagedView, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        """The conditioning every block of one step shares."""

    def embed(self, staged: StagedView, latent: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """Image tokens of rows [r0, r1): the patch embedding of the whole latent (positions
        depend on the whole grid), sliced to the rows."""
        s0, s1 = staged.tokens(r0, r1)
        return staged.model.pos_embed(latent)[:, s0:s1].contiguous()

    @abstractmethod
    def run_blocks(self, staged: StagedView, lo: int, hi: int, hidden: torch.Tensor, extra: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Blocks ``[lo, hi)`` on rows [r0, r1); ``extra`` is what the patch carries (see :meth:`carried_shape`)."""

    @abstractmethod
    def final(self, staged: StagedView, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        """The output layer on rows [r0, r1), unpatchified: (B, C_out, (r1-r0)·p, W)."""

    def carried_shape(self, staged: StagedView, batch: int, text_tokens: int, lo: int,
                      tokens: int) -> tuple[int, ...] | None:
        """Shape of what a patch carries into block ``lo`` besides its hidden states."""
        return (batch, text_tokens, staged.width) if self.carries_text else None

    def initial_extra(self, ctx: StepContext) -> torch.Tensor | None:
        """What a patch carries into block 0."""
        return ctx.text if self.carries_text else None


class FamilyRegistry:
    """Family name → adapter; refuses duplicates and lists the valid names on a miss."""

    def __init__(self) -> None:
        self._items: dict[str, FamilyAdapter] = {}

    def register(self, adapter: FamilyAdapter) -> FamilyAdapter:
        if not adapter.name:
            raise ValueError(f"family adapter {type(adapter).__name__} has no name")
        if adapter.name in self._items:
            raise ValueError(f"family {adapter.name!r} is registered twice "
                             f"({type(self._items[adapter.name]).__name__} and {type(adapter).__name__})")
        self._items[adapter.name] = adapter
        return adapter

    def get(self, name: str) -> FamilyAdapter:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownFamily(f"no runtime adapter for family {name!r}; families: {', '.join(self.names())}",
                                field="family") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, FamilyAdapter]]:
        return sorted(self._items.items())
