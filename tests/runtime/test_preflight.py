"""What pfrun refuses before any rank starts (one line, exit 2), and the flags users expect."""

from __future__ import annotations

import pytest
import torch

from profiles.catalog.models import load_model
from runtime.preflight import Machine, PreflightRefusal, preflight
from simulator.plan import plan_cluster

from .helpers import plan, write_plan

CPU_ONLY = Machine(gpus=(), cpu_cores=2, available_ram=8 * 10**9)


def one_line_exit_2(res, *needles: str) -> None:
    assert res.code == 2 and res.err.count("\n") == 1, res.err
    for needle in needles:
        assert needle in res.err, res.err


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_a_gpu_plan_on_a_cpu_only_machine_is_refused_saying_what_was_found(tmp_path, pfrun, no_cuda):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", steps=1, degrees={"data": 8},
                                                        topology="pcie8"))
    res = pfrun("--plan", plan_file)
    one_line_exit_2(res, "8 × l40 (pcie8)", "no CUDA GPU", "CPU cores", "--emulate-on-cpu")


def test_emulate_on_cpu_runs_a_gpu_plan_as_cpu_processes():
    p = plan("pixart-tiny", steps=1, degrees={"data": 8}, topology="pcie8")
    assert preflight(p, load_model("pixart-tiny"), plan_cluster(p), device="auto", dtype="float32",
                     emulate_on_cpu=True, machine=CPU_ONLY) == "cpu"
    with pytest.raises(PreflightRefusal, match="--device cpu was asked for"):
        preflight(p, load_model("pixart-tiny"), plan_cluster(p), device="cpu", dtype="float32", machine=CPU_ONLY)


def test_too_few_gpus_or_another_kind_is_refused():
    p = plan("pixart-tiny", steps=1, degrees={"data": 8}, topology="pcie8")
    preset, cluster = load_model("pixart-tiny"), plan_cluster(p)
    two = Machine(gpus=(("NVIDIA L40", 48 * 10**9, 47 * 10**9),) * 2, cpu_cores=16, available_ram=10**11)
    with pytest.raises(PreflightRefusal, match="needs 8 GPUs .* 2 CUDA GPUs"):
        preflight(p, preset, cluster, device="auto", dtype="float32", machine=two)
    h200 = Machine(gpus=(("NVIDIA H200", 141 * 10**9, 140 * 10**9),) * 8, cpu_cores=16, available_ram=10**11)
    with pytest.raises(PreflightRefusal, match="plan is for l40 .* H200.*--force"):
        preflight(p, preset, cluster, device="auto", dtype="float32", machine=h200)
    assert preflight(p, preset, cluster, device="auto", dtype="float32", machine=h200, force=True) == "cuda"


def test_predicted_memory_over_free_memory_is_refused_with_the_figures_unless_forced(tmp_path, pfrun, no_cuda,
                                                                                      monkeypatch):
    monkeypatch.setattr("runtime.preflight.available_ram", lambda: 1000)
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", steps=1, degrees={"data": 2},
                                                        topology="cpu2"))
    one_line_exit_2(pfrun("--plan", plan_file), "predicted to need", "GB RAM available", "--force")
    res = pfrun("--plan", plan_file, "--force", "--json")
    assert res.code == 0, res.err


@pytest.mark.parametrize("args,needles", [
    (("--height", "192"), ("plan is for 128×128", "192×128")),
    (("--resolution-binning",), ("PixArtAlphaPipeline bins 128×128 to 256×256", "--no-resolution-binning")),
    (("--scheduler", "NotAScheduler"), ("--scheduler", "not a diffusers scheduler class")),
    (("--prompt-file", "missing.txt"), ("--prompt-file", "file not found")),
])
def test_bad_run_options_are_one_line(tmp_path, pfrun, args, needles):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", steps=1))
    one_line_exit_2(pfrun("--plan", plan_file, *[str(tmp_path / a) if a.endswith(".txt") else a for a in args]),
                    *needles)


def test_a_negative_prompt_the_pipeline_would_ignore_is_refused(tmp_path, pfrun):
    plan_file = write_plan(tmp_path / "plan.json", plan("flux-tiny", steps=1))
    one_line_exit_2(pfrun("--plan", plan_file, "--negative-prompt", "blurry"), "--negative-prompt", "ignore")


def test_guidance_off_on_a_cfg_parallel_plan_is_refused(tmp_path, pfrun):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", steps=1, degrees={"cfg": 2}))
    one_line_exit_2(pfrun("--plan", plan_file, "--guidance-scale", "1"), "--guidance-scale", "cfg=2")


def test_prompt_file_num_images_and_steps(tmp_path, pfrun):
    """Two prompts × two images on a serial plan: four images, one after another, none ignored."""
    (tmp_path / "p.txt").write_text("a cat\n\na dog\n")
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", steps=4))
    res = pfrun("--plan", plan_file, "--prompt-file", tmp_path / "p.txt", "--num-images", "2", "--steps", "2",
                "--scheduler", "EulerDiscreteScheduler", "--latents", tmp_path / "z.pt", "--json")
    assert res.code == 0, res.err
    latents = torch.load(tmp_path / "z.pt")
    assert sorted(latents) == [0, 1, 2, 3]
    assert not torch.equal(latents[0], latents[1]) and not torch.equal(latents[1], latents[2])


def test_a_size_refusal_is_one_line_in_a_fresh_process(tmp_path):
    """A fresh process imports FluxPipeline (whose image processors warn without torchvision): still one line."""
    from tests.conftest import run_subprocess

    plan_file = write_plan(tmp_path / "plan.json", plan("flux-tiny", steps=1))
    res = run_subprocess("runtime", "--plan", plan_file, "--width", "256", timeout=120)
    one_line_exit_2(res, "plan is for 128×128", "128×256")


def test_the_vae_scale_factor_comes_from_the_folders_vae(tmp_path):
    """A three-level VAE scales by 4, not the assumed 8: a 256 px plan has a 64 × 64 latent."""
    import diffusers

    from runtime.cli import folder_preset
    from runtime.model_build import build_transformer
    from runtime.pipeline_prep import size_pipeline

    build_transformer(load_model("pixart-tiny"), meta=True).save_config(tmp_path / "transformer")
    diffusers.AutoencoderKL(block_out_channels=[8, 8, 8], down_block_types=["DownEncoderBlock2D"] * 3,
                            up_block_types=["UpDecoderBlock2D"] * 3, norm_num_groups=4).save_config(tmp_path / "vae")
    preset = folder_preset(tmp_path)
    assert preset.vae_scale_factor == 4 and preset.latent_size(256, 256) == (64, 64)
    assert size_pipeline(preset, tmp_path).vae_scale_factor == 4
