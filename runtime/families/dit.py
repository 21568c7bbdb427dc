"""DiT (``DiTTransformer2DModel``): class-conditioned self-attention, no text.

Its blocks are ``BasicTransformerBlock``s whose ``norm1`` (AdaLayerNormZero) embeds the
timestep and the class label itself, block by block; the output layer reads block 0's
embedding of them (``blocks[0].norm1.emb``), so the last PipeFusion stage keeps that one
module of block 0 when it frees the blocks it does not run. The model's own forward
unpatchifies assuming a square token grid, which a profiler's patch is not.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from profiles.catalog.models import ModelPreset
from profiles.errors import InputError
from runtime.conditioning import Branch, Conditioning
from runtime.families.base import FamilyAdapter, ProcessorKind, StagedView, StepContext, batch_of, unpatchify


class DiTAdapter(FamilyAdapter):
    name = "dit"
    processor_kinds = frozenset({"self"})
    forward_may_fail_after_blocks = True

    def attention_sites(self, block: Any) -> list[tuple[ProcessorKind, Any]]:
        return [("self", block.attn1)]

    def output_module(self, model: Any) -> Any:
        """Its final layer's work ends with ``proj_out_2`` (the reshape after it is free), so
        timing stops there and the reshape's error on a non-square patch is expected."""
        return model.proj_out_2

    def drop_block(self, block: Any, index: int, *, last_stage: bool) -> None:
        """The last stage keeps block 0's label/timestep embedding (``norm1.emb``): its output layer reads it."""
        if not (last_stage and index == 0):
            block.to("meta")
            return
        for name, child in block.named_children():
            if name != "norm1":
                child.to("meta")
        for name, child in block.norm1.named_children():
            if name != "emb":
                child.to("meta")

    def random_branch(self, preset: ModelPreset, gen: torch.Generator, *, null: bool) -> Branch:
        """A class label; the null branch is the extra "no class" label (index ``num_embeds_ada_norm``)."""
        classes = int(preset.config.get("num_embeds_ada_norm", 1000))
        label = classes if null else int(torch.randint(0, classes, (1,), generator=gen))
        return Branch(class_label=torch.tensor([label]))

    def embed_widths(self, preset: ModelPreset) -> dict[str, int | None]:
        return {}

    pipeline_class = "DiTPipeline"
    steps_scaled_input = True

    def encode_prompt(self, pipe: Any, preset: ModelPreset, prompt: str, negative: str) -> Conditioning:
        """A class label: the prompt as a number, or a label name of the pipeline's ``id2label``
        (``pipe.get_label_ids``). The null label is the model's extra class (``num_embeds_ada_norm``):
        DiTPipeline hard-codes 1000, which it is for ImageNet DiTs."""
        if negative:
            raise InputError("DiT is class-conditioned: its pipeline takes no negative prompt",
                             field="--negative-prompt")
        text = prompt.strip()
        if text.isdigit():
            label = int(text)
        else:
            try:
                label = pipe.get_label_ids([text])[0]
            except (ValueError, AttributeError, KeyError):
                raise InputError(f"not a class id or label of this DiT: {text!r}", field="--prompt") from None
        return Conditioning(cond=Branch(class_label=torch.tensor([label])), uncond=Branch(class_label=torch.tensor([int(preset.config.get("num_embeds_ada_norm", 1000))])))

    def timestep_recipe(self, pipe: Any, steps: int, latent_shape: tuple[int, ...]) -> dict[str, Any]:
        """DiTPipeline calls ``scheduler.set_timesteps(T)``."""
        return {"set_timesteps_only": True}

    def prepare_latents(self, pipe: Any, height: int, width: int, generator: Any, dtype: Any,
                        device: Any) -> torch.Tensor:
        """DiTPipeline's draw, ``randn_tensor`` of (1, C, h, w), no ``init_noise_sigma``. The pipeline
        draws only at the transformer's sample size; pfrun draws at the plan's (the same draw when
        they agree)."""
        from diffusers.utils.torch_utils import randn_tensor

        f = pipe.vae_scale_factor
        shape = (1, pipe.transformer.config.in_channels, height // f, width // f)
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    def transformer_kwargs(self, preset: ModelPreset, latent: torch.Tensor, t: torch.Tensor,
                           branch: Branch) -> dict[str, Any]:
        dev = latent.device
        return {"timestep": self.timestep(t.to(dev), latent.shape[0], latent.dtype), "return_dict": False,
                "hidden_states": latent, "class_labels": branch.class_label.to(dev)}

    def context(self, staged: StagedView, t: torch.Tensor, branch: Branch, dtype: torch.dtype) -> StepContext:
        batch = batch_of(branch)
        ts = self.timestep(t.to(staged.device), batch, dtype)
        return StepContext(batch=batch, temb=ts, class_labels=branch.class_label)

    def run_blocks(self, staged: StagedView, lo: int, hi: int, hidden: torch.Tensor, extra: torch.Tensor | None,
                   ctx: StepContext, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        for block in staged.blocks[lo:hi]:
            hidden = block(hidden, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                           timestep=ctx.temb, cross_attention_kwargs=None, class_labels=ctx.class_labels)
        return hidden, extra

    def final(self, staged: StagedView, hidden: torch.Tensor, ctx: StepContext, r0: int, r1: int) -> torch.Tensor:
        m = staged.model
        cond = staged.blocks[0].norm1.emb(ctx.temb, ctx.class_labels, hidden_dtype=hidden.dtype)
        shift, scale = m.proj_out_1(F.silu(cond)).chunk(2, dim=1)
        hidden = m.proj_out_2(m.norm_out(hidden) * (1 + scale[:, None]) + shift[:, None])
        return unpatchify(hidden, r1 - r0, staged.cols, staged.p)
