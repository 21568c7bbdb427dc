"""pfrun gives what the diffusers pipeline gives: identical float32 latents, family by family.

Each fixture builds a tiny pipeline (random weights, tiny transformer, tiny text encoders
from transformers configs, word-level tokenizers), saves it with ``save_pretrained``, runs
the pipeline's own ``__call__`` from the saved folder (``output_type="latent"``), and pfrun
runs the same folder serially and as PipeFusion on 2 ranks (warm-up = steps) with the same
prompt, negative prompt, seed, steps and guidance. Schedulers, each where its pipeline
takes it: DPMSolverMultistep with Karras sigmas (PixArt-α), EulerDiscrete (PixArt-Σ, DiT:
``init_noise_sigma`` and ``scale_model_input``), FlowMatchEulerDiscrete with dynamic
shifting (SD3's ``mu``; Flux's own sigmas and ``mu``), DDPM (HunyuanDiT: step noise from
the one generator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from .helpers import plan, write_plan

WORDS = "a cat dog on the mat red blurry photo of".split()
STEPS = 3
SEED = 7


def tokenizer(max_length: int) -> Any:
    """A word-level fast tokenizer (no download) padding to ``max_length`` by default."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=max_length)


def t5(d_model: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(WORDS) + 3, d_model=d_model, d_kv=8, d_ff=32, num_layers=1,
                                   num_heads=2))


def clip(hidden: int, *, projection: int | None = None) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(WORDS) + 3, hidden_size=hidden, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=16, projection_dim=projection or hidden)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def vae(latent_channels: int, scaling: float = 0.5) -> Any:
    import diffusers

    return diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels,
                                   down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                                   block_out_channels=[8] * 4, layers_per_block=1, norm_num_groups=4, sample_size=64,
                                   scaling_factor=scaling)


@dataclass
class Case:
    """A saved tiny pipeline, the arguments of one generation, and the pipeline's own latent."""

    folder: Path
    preset: str
    px: int
    prompt: str
    call: dict[str, Any]
    flags: list[str]
    load: dict[str, Any] = field(default_factory=dict)
    """Extra ``from_pretrained`` arguments (SD3 without T5: ``text_encoder_3=None``, as diffusers documents)."""
    latent: torch.Tensor = field(default_factory=lambda: torch.empty(0))


def pixart(d: Path, sigma: bool) -> Case:
    import diffusers

    torch.manual_seed(0)
    transformer = diffusers.PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=4,
        cross_attention_dim=16, caption_channels=32, sample_size=32, patch_size=2, norm_type="ada_norm_single",
        num_embeds_ada_norm=1000, use_additional_conditions=False)
    if sigma:
        cls, scheduler = diffusers.PixArtSigmaPipeline, diffusers.EulerDiscreteScheduler()
    else:
        cls, scheduler = diffusers.PixArtAlphaPipeline, diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True)
    pipe = cls(tokenizer=tokenizer(512), text_encoder=t5(32), vae=vae(4), transformer=transformer,
               scheduler=scheduler)
    pipe.save_pretrained(d)
    return Case(d, "pixart-tiny", 256, "a red cat on the mat",
                {"negative_prompt": "blurry photo", "guidance_scale": 3.0}, ["--negative-prompt", "blurry photo",
                                                                              "--guidance-scale", "3.0"])


def sd3(d: Path) -> Case:
    """SD3 saved without its T5 (the pipeline pads with zeros)."""
    import diffusers

    torch.manual_seed(0)
    transformer = diffusers.SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, num_layers=4, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=24, out_channels=16,
        pos_embed_max_size=32)
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                          max_shift=1.15)
    pipe = diffusers.StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler, vae=vae(16), text_encoder=clip(16, projection=12),
        tokenizer=tokenizer(16), text_encoder_2=clip(16, projection=12), tokenizer_2=tokenizer(16),
        text_encoder_3=None, tokenizer_3=None)
    pipe.save_pretrained(d)
    return Case(d, "sd3-tiny", 128, "a dog on the mat", {"negative_prompt": "blurry"},
                ["--negative-prompt", "blurry"], load={"text_encoder_3": None, "tokenizer_3": None})


def flux(d: Path) -> Case:
    import diffusers

    torch.manual_seed(0)
    transformer = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=2, num_single_layers=4, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=16, guidance_embeds=True, axes_dims_rope=[2, 2, 4])
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                          max_shift=1.15, base_image_seq_len=256,
                                                          max_image_seq_len=4096)
    pipe = diffusers.FluxPipeline(scheduler=scheduler, vae=vae(16), text_encoder=clip(16), tokenizer=tokenizer(16),
                                  text_encoder_2=t5(32), tokenizer_2=tokenizer(512), transformer=transformer)
    pipe.save_pretrained(d)
    return Case(d, "flux-tiny", 128, "a red dog", {"guidance_scale": 5.0}, ["--guidance-scale", "5.0"])


def dit(d: Path) -> Case:
    """DiT's pipeline decodes always: its VAE (scaling 1) sees the final latent, which is captured."""
    import diffusers

    torch.manual_seed(0)
    transformer = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                                  out_channels=8, num_layers=4, sample_size=16, patch_size=2,
                                                  num_embeds_ada_norm=1000)
    pipe = diffusers.DiTPipeline(transformer=transformer, vae=vae(4, scaling=1.0),
                                 scheduler=diffusers.EulerDiscreteScheduler())
    pipe.save_pretrained(d)
    return Case(d, "dit-tiny", 128, "3", {"class_labels": [3]}, [])


def hunyuan(d: Path) -> Case:
    import diffusers
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    transformer = diffusers.HunyuanDiT2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, patch_size=2, hidden_size=16, num_layers=6,
        mlp_ratio=2.0, learn_sigma=True, cross_attention_dim=16, cross_attention_dim_t5=24, pooled_projection_dim=16,
        text_len=77, text_len_t5=256, use_style_cond_and_image_meta_size=False, sample_size=16)
    bert = BertModel(BertConfig(vocab_size=len(WORDS) + 3, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=80))
    pipe = diffusers.HunyuanDiTPipeline(vae=vae(4), text_encoder=bert, tokenizer=tokenizer(77),
                                        transformer=transformer, scheduler=diffusers.DDPMScheduler(),
                                        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                                        text_encoder_2=t5(24), tokenizer_2=tokenizer(256))
    pipe.save_pretrained(d)
    return Case(d, "hunyuan-tiny", 128, "a cat on the mat",
                {"negative_prompt": "blurry", "use_resolution_binning": False},
                ["--negative-prompt", "blurry", "--no-resolution-binning"])


BUILDERS: dict[str, Callable[[Path], Case]] = {
    "pixart-alpha": lambda d: pixart(d, sigma=False), "pixart-sigma": lambda d: pixart(d, sigma=True),
    "sd3": sd3, "flux": flux, "dit": dit, "hunyuan": hunyuan}


def pipeline_latent(case: Case) -> torch.Tensor:
    """The saved pipeline's own ``__call__`` from the folder, one thread (as each pfrun rank)."""
    import diffusers

    pipe = diffusers.DiffusionPipeline.from_pretrained(str(case.folder), local_files_only=True, **case.load)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(SEED)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if isinstance(pipe, diffusers.DiTPipeline):
            seen: list[torch.Tensor] = []
            decode = pipe.vae.decode
            pipe.vae.decode = lambda z, *a, **k: (seen.append(z.clone()), decode(z, *a, **k))[1]
            pipe(num_inference_steps=STEPS, generator=generator, output_type="np", **case.call)
            return seen[0]
        out = pipe(prompt=case.prompt, height=case.px, width=case.px, num_inference_steps=STEPS,
                   generator=generator, output_type="latent", **case.call).images
        if isinstance(pipe, diffusers.FluxPipeline):
            out = pipe._unpack_latents(out, case.px, case.px, pipe.vae_scale_factor)
        return out
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def case(request, tmp_path_factory) -> Case:
    built = BUILDERS[request.param](tmp_path_factory.mktemp(request.param))
    built.latent = pipeline_latent(built)
    return built


@pytest.mark.parametrize("shape", ["serial", "pipefusion"])
def test_pfrun_latents_are_the_pipelines(case, shape, tmp_path, pfrun):
    fields = dict(degrees={"pipefusion": 2}, patches=2, warmup_steps=STEPS) if shape == "pipefusion" else {}
    plan_file = write_plan(tmp_path / "plan.json", plan(case.preset, steps=STEPS, px=case.px, **fields))
    res = pfrun("--plan", plan_file, "--model-path", case.folder, "--prompt", case.prompt, "--seed", str(SEED),
                "--steps", str(STEPS), "--latents", tmp_path / "z.pt", *case.flags)
    assert res.code == 0, res.err
    mine = torch.load(tmp_path / "z.pt")[0]
    assert mine.dtype == torch.float32 and mine.shape == case.latent.shape
    assert torch.equal(mine, case.latent), float((mine - case.latent).abs().max())
