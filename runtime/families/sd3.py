"""Stable Diffusion 3 (``SD3Transformer2DModel``): joint attention over [image; text].

Each ``JointTransformerBlock`` carries two streams, image and text, through one attention
(``attn``) whose text part uses ``add_q/k/v_proj``; so a PipeFusion patch takes the text
stream along from stage to stage. The timestep (float) and the pooled prompt go through
``time_text_embed``, the prompt through ``context_embedder``, once per step. The last
block is ``context_pre_only`` (no text output), so the profiler keeps two blocks.
SD3.5's dual-attention blocks (a second, image-only ``attn2``) are not supported.
"""

from __future__ import annotations

from typing import Any

import torch

from profiles.catalog.models import ModelPreset
from runtime.conditioning import Branch, Conditioning
from runtime.families.pixart import call_defaults
from runtime.families.base import FamilyAdapter, ProcessorKind, StagedView, StepContext, batch_of, unpatchify


class SD3Adapter(FamilyAdapter):
    name = "sd3"
    processor_kinds = frozenset({"joint"})
    carries_text = True

    def attention_sites(self, block: Any) -> list[tuple[ProcessorKind, Any]]:
        if getattr(block, "attn2", None) is not None:
            raise NotImplementedError("SD3.5 dual attention blocks are not supported by the stale K/V processor")
        return [("joint", block.attn)]

    def single_block_overrides(self) -> dict[str, Any]:
        return {"num_layers": 2}

    def timestep(self, t: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
        return t.reshape(()).expand(batch).to(dtype)

    def transformer_kwargs(self, preset: ModelPreset, latent: torch.Tensor, t: torch.Tensor,
                           branch: Branch) -> dict[str, Any]:
        dtype, dev = latent.dtype, latent.device
        return {"timestep": self.timestep(t.to(dev), latent.shape[0], dtype), "return_dict": False,
                "hidden_states": latent, "encoder_hidden_states": branch.prompt_embeds.to(device=dev, dtype=dtype),
                "pooled_projections": branch.pooled_embeds.to(device=dev, dtype=dtype)}

    pipeline_class = "StableDiffusion3Pipeline"
    scales_model_input = False

    def encode_prompt(self, pipe: Any, preset: ModelPreset, prompt: str, negative: str) -> Conditioning:
        """As ``__call__`` encodes (its ``max_sequence_length``; without T5 the pipeline pads with zeros)."""
        call = call_defaults(pipe)
        pe, npe, pooled, npooled = pipe.encode_prompt(prompt=prompt, prompt_2=None, prompt_3=None,
                                                      device=torch.device("cpu"), do_classifier_free_guidance=True,
                                                      negative_prompt=negative, num_images_per_prompt=1,
                                                      max_sequence_length=call["max_sequence_length"])
        return Conditioning(cond=Branch(prompt_embeds=pe, pooled_embeds=pooled),
                            uncond=Branch(prompt_embeds=npe, pooled_embeds=npooled))

    def timestep_recipe(self, pipe: Any, steps: int, latent_shape: tuple[int, ...]) -> dict[str, Any]:
        """``mu`` from the latent's token count when the scheduler shifts dynamically (SD3's ``__call__``)."""
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import calculate_shift

        config = pipe.scheduler.config
        if not config.get("use_dynamic_shifting", None):
            return {}
        p = pipe.transformer.config.patch_size
        mu = calculate_shift((latent_shape[2] // p) * (latent_shape[3] // p), config.get("base_image_seq_len", 256),
                             config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                             config.get("max_shift", 1.16))
        return {"timestep_kwargs": {"mu": mu}}

    def context(self, staged: StagedView, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        m, batch = staged.model, batch_of(branch)
        ts = self.timestep(t.to(staged.device), batch, dtype)
        return StepContext(batch=batch, temb=m.time_text_embed(ts, branch.pooled_embeds.to(dtype)),
                           text=m.context_embedder(branch.prompt_embeds.to(dtype)))

    def run_blocks(self, staged: StagedView, lo: int, hi: int, hidden: torch.Tensor, extra: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        text = extra
        for block in staged.blocks[lo:hi]:
            text, hidden = block(hidden_states=hidden, encoder_hidden_states=text, temb=ctx.temb,
                                 joint_attention_kwargs=None)
        return hidden, text

    def final(self, staged: StagedView, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        m = staged.model
        return unpatchify(m.proj_out(m.norm_out(hidden, ctx.temb)), r1 - r0, staged.cols, staged.p)
