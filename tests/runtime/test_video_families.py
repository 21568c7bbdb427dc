"""Issue 17's families under pfrun: Wan, Qwen-Image, HunyuanVideo and FLUX.2.

Video latents are (B, C, F·H, W) in the runtime (latent frames stacked along the rows,
the catalog's token rows); PipeFusion with warm-up = steps must give the serial latent
exactly (same operations in the same order), with a patch count that leaves an uneven last
patch and cuts across a frame boundary. HunyuanVideo and FLUX.2 are also held against their
diffusers pipeline's own ``__call__`` (``output_type="latent"``, prompt embeddings given, so
no text encoder is needed): same transformer weights, scheduler, seed, steps and guidance
give the bit-identical latent, serial and PipeFusion.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from profiles.catalog.models import load_model
from runtime.model_build import build_transformer, count_parameters
from runtime.model_loading import make_scheduler
from simulator.plan import patch_rows

from .helpers import max_diff, plan, run

T = 4
NEW = ("wan-tiny", "qwen-image-tiny", "hunyuan-video-tiny", "flux2-tiny")


def _pipeline_latent(name: str, embeds: dict[str, torch.Tensor], steps: int, seed: int) -> torch.Tensor:
    """The family's diffusers pipeline, built around the preset's seeded transformer and scheduler, run from
    prompt embeddings; its latent in pfrun's layout (HunyuanVideo: frames stacked; FLUX.2: unpacked)."""
    import diffusers

    from runtime.families.flux import unpack_flux

    preset = load_model(name)
    parts = dict(scheduler=make_scheduler(preset), vae=None, text_encoder=None, tokenizer=None,
                 transformer=build_transformer(preset, seed=0))
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        if preset.family == "hunyuan_video":
            pipe = diffusers.HunyuanVideoPipeline(**parts, text_encoder_2=None, tokenizer_2=None)
            pipe.set_progress_bar_config(disable=True)
            out = pipe(prompt_embeds=embeds["prompt_embeds"], pooled_prompt_embeds=embeds["pooled_embeds"],
                       prompt_attention_mask=embeds["prompt_mask"], height=128, width=128,
                       num_frames=preset.default_frames, num_inference_steps=steps, generator=gen,
                       output_type="latent").frames
            b, c, f, h, w = out.shape
            return out.reshape(b, c, f * h, w)
        pipe = diffusers.Flux2Pipeline(**parts)
        pipe.set_progress_bar_config(disable=True)
        out = pipe(prompt_embeds=embeds["prompt_embeds"], height=128, width=128, num_inference_steps=steps,
                   generator=gen, output_type="latent").images
        return unpack_flux(out, 8, 8)


@pytest.mark.parametrize("name", ["hunyuan-video-tiny", "flux2-tiny"])
def test_pfrun_gives_the_diffusers_pipelines_latent(name: str, tmp_path: Path) -> None:
    preset = load_model(name)
    assert count_parameters(build_transformer(preset, meta=True)) == preset.params
    gen = torch.Generator().manual_seed(3)
    embeds = {"prompt_embeds": torch.randn(1, preset.text_tokens, preset.text_embed_dim, generator=gen)}
    if preset.family == "hunyuan_video":  # a padded prompt: the last two tokens masked out
        embeds["pooled_embeds"] = torch.randn(1, preset.pooled_embed_dim, generator=gen)
        embeds["prompt_mask"] = torch.tensor([[1] * (preset.text_tokens - 2) + [0, 0]])
    torch.save({"cond": embeds}, tmp_path / "embeds.pt")
    steps, seed = 3, 7
    ref = _pipeline_latent(name, embeds, steps, seed)
    files = (str(tmp_path / "embeds.pt"),)
    serial = run(plan(name, steps=steps), seed=seed, prompt_embeds=files)
    assert float((serial.latents[0] - ref).abs().max()) == 0
    piped = run(plan(name, steps=steps, degrees={"pipefusion": 2}, patches=3, warmup_steps=steps), seed=seed,
                prompt_embeds=files)
    assert float((piped.latents[0] - ref).abs().max()) == 0


def test_sd35_large_layout_runs_at_tiny_size():
    """SD3.5-large is the sd3 family with QK RMS norm: the sd3 tiny preset with that norm counts, runs diffusers'
    forward, and runs under pfrun (serial and PipeFusion, exact at W = T)."""
    tiny = load_model("sd3-tiny")
    preset = tiny.model_copy(update={"config": {**tiny.config, "qk_norm": "rms_norm"}})
    assert load_model("sd3.5-large").config["qk_norm"] == "rms_norm"
    model = build_transformer(preset)
    assert count_parameters(model) == preset.params > tiny.params
    text = torch.randn(1, preset.text_tokens, preset.text_embed_dim)
    with torch.inference_mode():
        out = model(hidden_states=torch.randn(1, 16, 16, 16), encoder_hidden_states=text,
                    pooled_projections=torch.randn(1, preset.pooled_embed_dim), timestep=torch.tensor([500.0]),
                    return_dict=False)[0]
    assert out.shape == (1, 16, 16, 16) and out.isfinite().all()
    from runtime.run import execute, job_for

    serial = execute(job_for(plan("sd3-tiny", steps=2), preset, decode=False, timeout_s=60))
    piped = execute(job_for(plan("sd3-tiny", steps=2, degrees={"pipefusion": 2}, patches=3, warmup_steps=2), preset,
                            decode=False, timeout_s=60))
    assert float((piped.latents[0] - serial.latents[0]).abs().max()) == 0  # pfrun runs it as SD3's runtime does


@pytest.fixture(scope="module")
def serial():
    return {name: run(plan(name, steps=T)) for name in NEW}


def test_the_wan_latent_stacks_latent_frames_along_the_rows(serial):
    preset = load_model("wan-tiny")
    assert preset.latent_frames() == 2 == preset.latent_frames(5)  # 1 + (5 - 1) / 4
    assert preset.latent_size(128, 128) == (32, 16) and preset.token_grid(128, 128) == (16, 8)
    assert tuple(serial["wan-tiny"].latents[0].shape) == (1, 4, 32, 16)
    assert serial["wan-tiny"].latents[0].isfinite().all()


@pytest.mark.parametrize("name", NEW)
def test_pipefusion_with_full_warmup_and_an_uneven_last_patch_reproduces_serial(name, serial):
    rows = load_model(name).token_grid(128, 128)[0]
    assert len(set(patch_rows(rows, 3))) > 1  # 3 patches over 16 or 8 token rows: uneven
    result = run(plan(name, steps=T, degrees={"pipefusion": 2}, patches=3, warmup_steps=T))
    assert max_diff(result, serial[name]) == 0  # same operations in the same order


def test_wan_pipefusion_patches_may_cut_through_a_frame(serial):
    """wan-tiny has 2 latent frames of 8 token rows; 3 patches cut frame 0|1 inside a patch."""
    rows_per_frame = load_model("wan-tiny").token_grid(128, 128)[0] // 2
    sizes = patch_rows(2 * rows_per_frame, 3)  # [6, 5, 5]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    assert any(r0 < rows_per_frame < r0 + n for r0, n in zip(starts, sizes))
    stale = run(plan("wan-tiny", steps=T, degrees={"pipefusion": 2}, patches=3, warmup_steps=1))
    diff = max_diff(stale, serial["wan-tiny"])
    assert 0 < diff < 1  # stale K/V for the later patches: visible, bounded


@pytest.mark.parametrize("preset,axis", [("wan-tiny", "ulysses"), ("wan-tiny", "ring"), ("wan-tiny", "distrifusion"),
                                         ("wan-tiny", "tensor"), ("qwen-image-tiny", "ulysses"),
                                         ("qwen-image-tiny", "ring"), ("qwen-image-tiny", "distrifusion")])
def test_axes_the_new_adapters_gained_are_no_longer_refused(preset: str, axis: str) -> None:
    """Issue 11 (round 4) gave Wan and Qwen-Image their sequence-parallel and patch-parallel
    processors and Wan its sharded RMS norms, and removed their ``runtime_lacks`` entries: the
    search's runnable check and pfrun both read them, so both now accept these axes (that they
    run and match serial is tests/runtime/test_every_shape_runs.py)."""
    from profiles.catalog.models import load_model
    from simulator.plan import plan_from_spec
    from simulator.runnable import unrunnable_reason

    model = load_model(preset)
    assert not getattr(model.arch.spec, "runtime_lacks", {})
    assert unrunnable_reason(plan_from_spec(preset, f"{axis}=2", height_px=128, width_px=128, steps=2), model) is None


@pytest.mark.parametrize("preset,axis", [("hunyuan-video-tiny", "ulysses"), ("hunyuan-video-tiny", "ring"),
                                         ("hunyuan-video-tiny", "distrifusion"), ("flux2-tiny", "ulysses"),
                                         ("flux2-tiny", "distrifusion"), ("flux2-tiny", "tensor")])
def test_axes_hunyuan_video_and_flux2_lack_are_refused_before_any_rank_starts(preset: str, axis: str) -> None:
    """The family spec's ``runtime_lacks`` against each strategy's ``runtime_needs`` is what the
    search's runnable check and pfrun both read, so the search never writes a plan whose
    processors the family's adapter lacks."""
    from simulator.plan import plan_from_spec
    from simulator.runnable import unrunnable_reason

    reason = unrunnable_reason(plan_from_spec(preset, f"{axis}=2", height_px=128, width_px=128, steps=2),
                               load_model(preset))
    assert reason is not None and reason.startswith(f"degrees.{axis}:") and "not executed" in reason


def test_every_capability_a_strategy_needs_is_one_a_family_can_lack() -> None:
    from profiles.families.spec import RUNTIME_CAPABILITIES
    from simulator.strategies import STRATEGIES

    needs = {s.runtime_needs for s in STRATEGIES if s.runtime_needs}
    assert needs == RUNTIME_CAPABILITIES


@pytest.mark.parametrize("name", ["hunyuan-video-tiny", "flux2-tiny"])
def test_stale_pipefusion_and_data_parallel_on_the_new_adapters(name, serial):
    """W=1: later patches read one-step-old K/V (visible, bounded); data=2: replica 0 is the serial clip, replica 1
    another seed's."""
    stale = max_diff(run(plan(name, steps=T, degrees={"pipefusion": 2}, patches=3, warmup_steps=1)), serial[name])
    assert 0 < stale < 0.1
    data = run(plan(name, steps=T, degrees={"data": 2}), images=2)
    assert max_diff(data, serial[name]) == 0 and float((data.latents[1] - data.latents[0]).abs().max()) > 0


def test_hunyuan_video_tensor_parallel_is_within_rounding_of_serial(serial):
    result = run(plan("hunyuan-video-tiny", steps=T, degrees={"tensor": 2}))
    scale = float(serial["hunyuan-video-tiny"].latents[0].abs().max())
    assert max_diff(result, serial["hunyuan-video-tiny"]) <= 2e-5 * scale


def test_pfrun_generates_the_plans_frames():
    """A plan's ``frames`` sets the clip length pfrun generates: 9 frames are 3 latent frames of 16 rows."""
    result = run(plan("wan-tiny", steps=1, frames=9))
    assert tuple(result.latents[0].shape) == (1, 4, 3 * 16, 16)
