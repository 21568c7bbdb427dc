"""PixArt-α/Σ (``PixArtTransformer2DModel``): self-attention, cross-attention to T5 captions.

Its blocks are diffusers' ``BasicTransformerBlock``: ``attn1`` attends over the image,
``attn2`` over the caption (kept whole on every rank: never buffered, never sharded).
The timestep goes through ``adaln_single`` once per step, with the image size and aspect
ratio that PixArt-α 1024 embeds (``use_additional_conditions``); the caption through
``caption_projection``. The output layer modulates with ``scale_shift_table``.
"""

from __future__ import annotations

from typing import Any

import torch

from profiles.catalog.models import ModelPreset
from profiles.errors import InputError
from runtime.conditioning import Branch, Conditioning
from runtime.families.base import (FamilyAdapter, ProcessorKind, StagedView, StepContext, batch_of,
                                   image_size_px, unpatchify)


def pixart_added_conditions(preset: ModelPreset, height_px: int, width_px: int, batch: int, device: Any,
                            dtype: Any) -> dict[str, Any]:
    """PixArt's ``added_cond_kwargs``: the image size and aspect ratio, as its pipeline passes them.

    PixArt-α 1024 (``use_additional_conditions``) embeds them; other checkpoints ignore them,
    so they are always given (a None here crashes the models that use them).
    """
    return {"resolution": torch.tensor([[height_px, width_px]] * batch, device=device, dtype=dtype),
            "aspect_ratio": torch.tensor([[height_px / width_px]] * batch, device=device, dtype=dtype)}


def call_defaults(pipe: Any) -> dict[str, Any]:
    """The default arguments of the pipeline's ``__call__`` (its own word on lengths and flags)."""
    import inspect

    return {k: v.default for k, v in inspect.signature(type(pipe).__call__).parameters.items()}


def aspect_ratio_bins(pipeline: str, sample_size: int) -> dict[str, list[float]]:
    """The bins PixArt-α/Σ's ``__call__`` picks for a transformer of ``sample_size`` (as their code does)."""
    from diffusers.pipelines.pixart_alpha import pipeline_pixart_alpha as alpha
    from diffusers.pipelines.pixart_alpha import pipeline_pixart_sigma as sigma

    table = {128: alpha.ASPECT_RATIO_1024_BIN, 64: alpha.ASPECT_RATIO_512_BIN, 32: alpha.ASPECT_RATIO_256_BIN}
    if pipeline == "PixArtSigmaPipeline":
        table[256] = sigma.ASPECT_RATIO_2048_BIN
    if sample_size not in table:
        raise InputError(f"{pipeline} bins resolutions only for sample sizes {sorted(table)}, not {sample_size}; "
                         "use --no-resolution-binning", field="--resolution-binning")
    return table[sample_size]


class PixArtAdapter(FamilyAdapter):
    name = "pixart"
    processor_kinds = frozenset({"self"})

    def attention_sites(self, block: Any) -> list[tuple[ProcessorKind, Any]]:
        return [("self", block.attn1)]

    def random_branch(self, preset: ModelPreset, gen: torch.Generator, *, null: bool) -> Branch:
        b = super().random_branch(preset, gen, null=null)
        b.prompt_mask = torch.ones(1, preset.text_tokens, dtype=torch.long)
        return b

    def transformer_kwargs(self, preset: ModelPreset, latent: torch.Tensor, t: torch.Tensor,
                           branch: Branch) -> dict[str, Any]:
        batch, _, h, w = latent.shape
        dtype, dev = latent.dtype, latent.device
        mask = None if branch.prompt_mask is None else branch.prompt_mask.to(device=dev)
        return {"timestep": self.timestep(t.to(dev), batch, dtype), "return_dict": False, "hidden_states": latent,
                "encoder_hidden_states": branch.prompt_embeds.to(device=dev, dtype=dtype),
                "encoder_attention_mask": mask,
                "added_cond_kwargs": pixart_added_conditions(preset, *image_size_px(preset, h, w), batch, dev, dtype)}

    pipeline_class = "PixArtAlphaPipeline"

    def encode_prompt(self, pipe: Any, preset: ModelPreset, prompt: str, negative: str) -> Conditioning:
        """As ``__call__`` encodes: its ``max_sequence_length`` (α 120, Σ 300) and ``clean_caption`` defaults."""
        call = call_defaults(pipe)
        pe, pm, npe, npm = pipe.encode_prompt(prompt, do_classifier_free_guidance=True, negative_prompt=negative,
                                              num_images_per_prompt=1, device=torch.device("cpu"),
                                              clean_caption=call["clean_caption"],
                                              max_sequence_length=call["max_sequence_length"])
        return Conditioning(cond=Branch(prompt_embeds=pe, prompt_mask=pm),
                            uncond=Branch(prompt_embeds=npe, prompt_mask=npm))

    def generation_size(self, pipe: Any, height: int, width: int, binning: bool) -> tuple[int, int]:
        """The aspect-ratio bin the pipeline maps the request to (bins chosen by the transformer's sample size)."""
        if not binning:
            return height, width
        bins = aspect_ratio_bins(pipe.__class__.__name__, int(pipe.transformer.config.sample_size))
        h, w = pipe.image_processor.classify_height_width_bin(height, width, ratios=bins)
        return int(h), int(w)

    def context(self, staged: StagedView, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        m, batch = staged.model, batch_of(branch)
        dev = staged.device
        ts = self.timestep(t.to(dev), batch, dtype)
        sizes = pixart_added_conditions(staged.preset, *staged.image_size_px, batch, dev, dtype)
        ctx = StepContext(batch=batch)
        ctx.temb, ctx.temb_extra = m.adaln_single(ts, sizes, batch_size=batch, hidden_dtype=dtype)
        ctx.text = m.caption_projection(branch.prompt_embeds.to(dtype)).view(batch, -1, m.inner_dim)
        if branch.prompt_mask is not None:
            ctx.text_mask = ((1 - branch.prompt_mask.to(dtype)) * -10000.0).unsqueeze(1)
        return ctx

    def run_blocks(self, staged: StagedView, lo: int, hi: int, hidden: torch.Tensor, extra: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        for block in staged.blocks[lo:hi]:
            hidden = block(hidden, attention_mask=None, encoder_hidden_states=ctx.text,
                           encoder_attention_mask=ctx.text_mask, timestep=ctx.temb,
                           cross_attention_kwargs=None, class_labels=None)
        return hidden, extra

    def final(self, staged: StagedView, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        m = staged.model
        shift, scale = (m.scale_shift_table[None] + ctx.temb_extra[:, None]).chunk(2, dim=1)
        hidden = m.proj_out(m.norm_out(hidden) * (1 + scale) + shift)
        return unpatchify(hidden, r1 - r0, staged.cols, staged.p)
