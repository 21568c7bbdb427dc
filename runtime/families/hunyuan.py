"""HunyuanDiT (``HunyuanDiT2DModel``): two text encoders, 2-D rotary positions, long skips.

The caption comes from CLIP (``prompt_embeds``) and T5 (``prompt_embeds_2``, projected by
``text_embedder``), joined and padded where masked; every block cross-attends to it. The
self-attention (``attn1``) applies the pipeline's cropped 2-D rotary table. The timestep
(float), the pooled T5 embedding and, for v1.1, the image size and style go through
``time_extra_emb`` once per step.

Long skips: with ``L`` blocks, block ``i < L/2 - 1`` pushes its output and block
``i > L/2`` pops the output of block ``L - 1 - i`` (L = 6: blocks 0 and 1 push; 4 pops
block 1's, 5 pops block 0's; entering block 4 two skips are alive). A PipeFusion patch
carries the alive skips to the next stage as one (k, B, n, D) tensor.
"""

from __future__ import annotations

from typing import Any

import torch

from profiles.catalog.models import ModelPreset
from runtime.conditioning import Branch, Conditioning
from runtime.families.base import (FamilyAdapter, ProcessorKind, StagedView, StepContext, batch_of,
                                   image_size_px, unpatchify)


def hunyuan_rotary(preset: ModelPreset, rows: int, cols: int) -> tuple[Any, Any]:
    """HunyuanDiT's 2-D rotary table, cropped to the grid the way its pipeline does (on CPU)."""
    from diffusers.models.embeddings import get_2d_rotary_pos_embed
    from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import get_resize_crop_region_for_grid

    base = 512 // 8 // int(preset.config.get("patch_size", preset.arch.patch_size))
    crops = get_resize_crop_region_for_grid((rows, cols), base)
    return get_2d_rotary_pos_embed(preset.arch.head_dim, crops, (rows, cols), output_type="pt")


def hunyuan_meta(preset: ModelPreset, height_px: int, width_px: int, batch: int, device: Any,
                 dtype: Any) -> tuple[Any, Any]:
    """HunyuanDiT v1.1's ``image_meta_size`` and ``style`` (both None when the model has no such input).

    Its pipeline passes original size (its default 1024 × 1024) + target size + crop top-left, in
    pixels, and style 0.
    """
    if not preset.config.get("use_style_cond_and_image_meta_size", True):
        return None, None
    meta = torch.tensor([[1024, 1024, height_px, width_px, 0, 0]] * batch, device=device, dtype=dtype)
    return meta, torch.zeros(batch, device=device, dtype=torch.long)


def skips_entering(layers: int, lo: int) -> int:
    """Long skips alive before block ``lo`` of ``layers`` (see the module doc)."""
    half = layers // 2
    return min(lo, half - 1) - max(0, lo - half - 1)


class HunyuanAdapter(FamilyAdapter):
    name = "hunyuan"
    processor_kinds = frozenset({"self"})

    def blocks(self, model: Any) -> list[Any]:
        return list(model.blocks)

    def attention_sites(self, block: Any) -> list[tuple[ProcessorKind, Any]]:
        return [("self", block.attn1)]

    def single_block_overrides(self) -> dict[str, Any]:
        """4 layers are the fewest with a skip block (three plain blocks, one skip)."""
        return {"num_layers": 4}

    def random_branch(self, preset: ModelPreset, gen: torch.Generator, *, null: bool) -> Branch:
        cfg = preset.config
        t1, t2 = int(cfg.get("text_len", 77)), int(cfg.get("text_len_t5", 256))
        return Branch(prompt_embeds=torch.randn(1, t1, int(cfg["cross_attention_dim"]), generator=gen),
                      prompt_mask=torch.ones(1, t1, dtype=torch.long),
                      prompt_embeds_2=torch.randn(1, t2, int(cfg["cross_attention_dim_t5"]), generator=gen),
                      prompt_mask_2=torch.ones(1, t2, dtype=torch.long))

    pipeline_class = "HunyuanDiTPipeline"

    def encode_prompt(self, pipe: Any, preset: ModelPreset, prompt: str, negative: str) -> Conditioning:
        """As ``__call__`` encodes: CLIP (77 tokens, encoder 0), then T5 (256 tokens, encoder 1)."""
        out = []
        for length, index in ((77, 0), (256, 1)):
            out.append(pipe.encode_prompt(prompt=prompt, device=torch.device("cpu"), dtype=torch.float32,
                                          num_images_per_prompt=1, do_classifier_free_guidance=True,
                                          negative_prompt=negative, max_sequence_length=length,
                                          text_encoder_index=index))
        (pe, npe, pm, npm), (pe2, npe2, pm2, npm2) = out
        return Conditioning(cond=Branch(prompt_embeds=pe, prompt_mask=pm, prompt_embeds_2=pe2, prompt_mask_2=pm2),
                            uncond=Branch(prompt_embeds=npe, prompt_mask=npm, prompt_embeds_2=npe2,
                                          prompt_mask_2=npm2))

    def timestep_recipe(self, pipe: Any, steps: int, latent_shape: tuple[int, ...]) -> dict[str, Any]:
        """HunyuanDiTPipeline calls ``scheduler.set_timesteps(T)``."""
        return {"set_timesteps_only": True}

    def generation_size(self, pipe: Any, height: int, width: int, binning: bool) -> tuple[int, int]:
        """Multiples of 16, then (binning) the closest of the pipeline's ``SUPPORTED_SHAPE``."""
        from diffusers.pipelines.hunyuandit.pipeline_hunyuandit import SUPPORTED_SHAPE, map_to_standard_shapes

        height, width = int((height // 16) * 16), int((width // 16) * 16)
        if binning and (height, width) not in SUPPORTED_SHAPE:
            width, height = map_to_standard_shapes(width, height)
        return int(height), int(width)

    def timestep(self, t: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
        return t.reshape(()).expand(batch).to(dtype)

    def embed_widths(self, preset: ModelPreset) -> dict[str, int | None]:
        return {"prompt_embeds": preset.config.get("cross_attention_dim"),
                "prompt_embeds_2": preset.config.get("cross_attention_dim_t5")}

    def transformer_kwargs(self, preset: ModelPreset, latent: torch.Tensor, t: torch.Tensor,
                           branch: Branch) -> dict[str, Any]:
        batch, _, h, w = latent.shape
        p = preset.arch.patch_size
        dtype, dev = latent.dtype, latent.device

        def mask(x: Any) -> Any:
            return None if x is None else x.to(device=dev)

        meta, style = hunyuan_meta(preset, *image_size_px(preset, h, w), batch, dev, dtype)
        kw = {"timestep": self.timestep(t.to(dev), batch, dtype), "return_dict": False, "hidden_states": latent,
              "encoder_hidden_states": branch.prompt_embeds.to(device=dev, dtype=dtype),
              "text_embedding_mask": mask(branch.prompt_mask),
              "encoder_hidden_states_t5": branch.prompt_embeds_2.to(device=dev, dtype=dtype),
              "text_embedding_mask_t5": mask(branch.prompt_mask_2),
              "image_rotary_emb": tuple(x.to(dev) for x in hunyuan_rotary(preset, h // p, w // p))}
        if meta is not None:
            kw.update(image_meta_size=meta, style=style)
        return kw

    def context(self, staged: StagedView, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        m, batch, dev = staged.model, batch_of(branch), staged.device
        ts = self.timestep(t.to(dev), batch, dtype)
        meta, style = hunyuan_meta(staged.preset, *staged.image_size_px, batch, dev, dtype)
        ctx = StepContext(batch=batch)
        ctx.temb = m.time_extra_emb(ts, branch.prompt_embeds_2.to(dtype), meta, style, hidden_dtype=ts.dtype)
        t5 = branch.prompt_embeds_2.to(dtype)
        t5 = m.text_embedder(t5.view(-1, t5.shape[-1])).view(batch, t5.shape[1], -1)
        text = torch.cat([branch.prompt_embeds.to(dtype), t5], dim=1)
        mask = torch.cat([branch.prompt_mask, branch.prompt_mask_2], dim=-1).unsqueeze(2).bool()
        ctx.text = torch.where(mask, text, m.text_embedding_padding)
        ctx.rotary = tuple(x.to(dev) for x in hunyuan_rotary(staged.preset, staged.rows, staged.cols))
        return ctx

    def carried_shape(self, staged: StagedView, batch: int, text_tokens: int, lo: int,
                      tokens: int) -> tuple[int, ...] | None:
        k = skips_entering(len(staged.blocks), lo)
        return (k, batch, tokens, staged.width) if k else None

    def run_blocks(self, staged: StagedView, lo: int, hi: int, hidden: torch.Tensor, extra: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The long-skip stack travels in ``extra`` as one (k, B, n, D) tensor."""
        half = len(staged.blocks) // 2
        s0, s1 = staged.tokens(r0, r1)
        cos, sin = ctx.rotary
        rotary = (cos[s0:s1], sin[s0:s1])
        skips = list(extra.unbind(0)) if extra is not None else []
        for i in range(lo, hi):
            skip = skips.pop() if i > half else None
            hidden = staged.blocks[i](hidden, temb=ctx.temb, encoder_hidden_states=ctx.text,
                                      image_rotary_emb=rotary, skip=skip)
            if i < half - 1:
                skips.append(hidden)
        return hidden, (torch.stack(skips) if skips else None)

    def final(self, staged: StagedView, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        m = staged.model
        hidden = m.proj_out(m.norm_out(hidden, ctx.temb.to(torch.float32)))
        return unpatchify(hidden, r1 - r0, staged.cols, staged.p)
