"""Flux (``FluxTransformer2DModel``): double-stream blocks, then single-stream blocks, rotary positions.

The latent is packed 2×2 into tokens (a Linear ``x_embedder`` per packed token, so
embedding a band of rows alone is exact); the text stream joins the image in every
attention (double blocks: as added K/V; single blocks: one [text; image] sequence), so a
PipeFusion patch carries it from stage to stage. Positions are rotary ids (row, col) of
[text; image]; a patch's blocks get the rows of the table for [text; this patch]. The
timestep is t/1000 (the embedding scales it back), with the distilled guidance value for
FLUX.1-dev (``guidance_embeds``).
"""

from __future__ import annotations

from typing import Any

import torch

from profiles.catalog.models import ModelPreset
from runtime.conditioning import Branch, Conditioning
from runtime.families.pixart import call_defaults
from runtime.families.base import (FamilyAdapter, ProcessorKind, StagedView, StepContext, TensorPlan, TensorSplit,
                                   batch_of, default_tensor_plan,
                                   drop_learned_sigma)

FLUX_GUIDANCE = 3.5
"""Flux's distilled guidance value (FLUX.1-dev's pipeline default)."""


def pack_flux(latent: Any) -> Any:
    """(B, C, H, W) → (B, H/2·W/2, 4C): Flux's 2×2 packing, row-major over token rows."""
    b, c, h, w = latent.shape
    return latent.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_flux(tokens: Any, rows: int, cols: int) -> Any:
    """Inverse of :func:`pack_flux` for a grid of ``rows × cols`` tokens."""
    b, _, ch = tokens.shape
    c = ch // 4
    return tokens.view(b, rows, cols, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, rows * 2, cols * 2)


def flux_image_ids(rows: int, cols: int) -> Any:
    """Flux's (row, col) position ids of a ``rows × cols`` token grid, row-major (float32)."""
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3)


def flux_guidance(branch: Branch, batch: int, dtype: Any, device: Any) -> Any:
    """The distilled guidance value per batch item: the branch's (``--guidance-scale``), else FLUX_GUIDANCE."""
    if branch.guidance is not None:
        return branch.guidance.reshape(-1)[:1].to(device=device, dtype=torch.float32).expand(batch).to(dtype)
    return torch.full((batch,), FLUX_GUIDANCE, dtype=dtype, device=device)


class FluxAdapter(FamilyAdapter):
    name = "flux"
    processor_kinds = frozenset({"flux"})
    carries_text = True

    def blocks(self, model: Any) -> list[Any]:
        """Double-stream blocks, then single-stream blocks."""
        return list(model.transformer_blocks) + list(model.single_transformer_blocks)

    def attention_sites(self, block: Any) -> list[tuple[ProcessorKind, Any]]:
        return [("flux", block.attn)]

    def single_block_overrides(self) -> dict[str, Any]:
        return {"num_layers": 1, "num_single_layers": 1}

    def tensor_plan(self, block: Any) -> TensorPlan:
        """Double blocks: the default. Single blocks have no ``to_out``: the attention output (the
        heads' ``dim``) and ``proj_mlp``'s output are concatenated into ``proj_out``, so ``proj_mlp``
        is column-split and ``proj_out`` row-split in two packed blocks ``[dim, mlp]`` (one
        all-reduce per single block)."""
        plan = default_tensor_plan(block)
        if hasattr(block, "proj_mlp") and hasattr(block, "proj_out"):
            dim = block.proj_out.out_features
            plan.splits += [TensorSplit(block, "proj_mlp", "column"),
                            TensorSplit(block, "proj_out", "row", (dim, block.proj_mlp.out_features))]
        return plan

    def timestep(self, t: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
        return t.reshape(()).expand(batch).to(dtype) / 1000

    def transformer_kwargs(self, preset: ModelPreset, latent: torch.Tensor, t: torch.Tensor,
                           branch: Branch) -> dict[str, Any]:
        batch, _, h, w = latent.shape
        p = preset.arch.patch_size
        dtype, dev = latent.dtype, latent.device
        kw = {"timestep": self.timestep(t.to(dev), batch, dtype), "return_dict": False,
              "hidden_states": pack_flux(latent),
              "encoder_hidden_states": branch.prompt_embeds.to(device=dev, dtype=dtype),
              "pooled_projections": branch.pooled_embeds.to(device=dev, dtype=dtype),
              "txt_ids": torch.zeros(branch.prompt_embeds.shape[1], 3, device=dev),
              "img_ids": flux_image_ids(h // p, w // p).to(dev)}
        if preset.config.get("guidance_embeds", False):
            kw["guidance"] = flux_guidance(branch, batch, dtype, dev)
        return kw

    def noise_from_output(self, preset: ModelPreset, out: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        return drop_learned_sigma(preset, unpack_flux(out, rows, cols))

    pipeline_class = "FluxPipeline"
    scales_model_input = False
    distilled_guidance = True

    def encode_prompt(self, pipe: Any, preset: ModelPreset, prompt: str, negative: str) -> Conditioning:
        """As ``__call__`` encodes (max_sequence_length 512); without true CFG it ignores the negative prompt."""
        call = call_defaults(pipe)
        pe, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=torch.device("cpu"),
                                           num_images_per_prompt=1, max_sequence_length=call["max_sequence_length"])
        return Conditioning(cond=Branch(prompt_embeds=pe, pooled_embeds=pooled), uncond=None)

    def timestep_recipe(self, pipe: Any, steps: int, latent_shape: tuple[int, ...]) -> dict[str, Any]:
        """FluxPipeline's sigmas ``linspace(1, 1/T, T)`` (none with ``use_flow_sigmas``), ``mu`` from the
        packed token count, and ``set_begin_index(0)``."""
        import numpy as np
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        config = pipe.scheduler.config
        sigmas = None if config.get("use_flow_sigmas", False) else np.linspace(1.0, 1 / steps, steps)
        mu = calculate_shift((latent_shape[2] // 2) * (latent_shape[3] // 2), config.get("base_image_seq_len", 256),
                             config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                             config.get("max_shift", 1.15))
        kwargs: dict[str, Any] = {"mu": mu}
        if sigmas is not None:
            kwargs["sigmas"] = sigmas
        return {"timestep_kwargs": kwargs, "begin_index": 0}

    def prepare_latents(self, pipe: Any, height: int, width: int, generator: Any, dtype: Any,
                        device: Any) -> torch.Tensor:
        """The pipeline's packed draw, unpacked to (1, C, H, W) (a permutation: exact)."""
        packed, _ = pipe.prepare_latents(1, pipe.transformer.config.in_channels // 4, height, width, dtype, device,
                                         generator)
        return pipe._unpack_latents(packed, height, width, pipe.vae_scale_factor)

    def context(self, staged: StagedView, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        m, batch, dev = staged.model, batch_of(branch), staged.device
        ts = self.timestep(t.to(dev), batch, dtype) * 1000
        pooled = branch.pooled_embeds.to(dtype)
        ctx = StepContext(batch=batch)
        if m.config.guidance_embeds:
            guidance = flux_guidance(branch, batch, dtype, dev) * 1000
            ctx.temb = m.time_text_embed(ts, guidance, pooled)
        else:
            ctx.temb = m.time_text_embed(ts, pooled)
        ctx.text = m.context_embedder(branch.prompt_embeds.to(dtype))
        text_ids = torch.zeros(ctx.text.shape[1], 3)
        ids = torch.cat([text_ids, flux_image_ids(staged.rows, staged.cols)], 0).to(dev)
        ctx.rotary = m.pos_embed(ids)
        return ctx

    def embed(self, staged: StagedView, latent: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        return staged.model.x_embedder(pack_flux(latent[:, :, r0 * staged.p: r1 * staged.p]))

    def run_blocks(self, staged: StagedView, lo: int, hi: int, hidden: torch.Tensor, extra: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        text = extra
        nt = ctx.text.shape[1]
        s0, s1 = staged.tokens(r0, r1)
        cos, sin = ctx.rotary
        rotary = (torch.cat([cos[:nt], cos[nt + s0: nt + s1]]), torch.cat([sin[:nt], sin[nt + s0: nt + s1]]))
        for block in staged.blocks[lo:hi]:
            text, hidden = block(hidden_states=hidden, encoder_hidden_states=text, temb=ctx.temb,
                                 image_rotary_emb=rotary, joint_attention_kwargs=None)
        return hidden, text

    def final(self, staged: StagedView, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        m = staged.model
        return unpack_flux(m.proj_out(m.norm_out(hidden, ctx.temb)), r1 - r0, staged.cols)
