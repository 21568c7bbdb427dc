"""The real pfrun command: outputs, refusals and the serial comparison."""

from __future__ import annotations

import json

from tests.conftest import run_subprocess

from .helpers import plan, write_plan


def test_serial_run_writes_the_image_and_reports_latency(tmp_path, pfrun):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", steps=2))
    res = pfrun("--plan", plan_file, "--out", tmp_path / "img.png", "--json")
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["latency_s"] > 0 and len(report["step_times_s"]) == 2
    assert report["images"] == [str(tmp_path / "img.png")]
    assert (tmp_path / "img.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unrunnable_plan_is_one_line_and_exit_2(tmp_path, pfrun):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", degrees={"ulysses": 2, "pipefusion": 2},
                                                        patches=2, warmup_steps=1, px=144))
    res = pfrun("--plan", plan_file)
    assert res.code == 2
    assert res.err.count("\n") == 1 and "45 tokens of a 5-row PipeFusion patch do not split into the 2 ranks" in res.err


def test_invalid_plan_is_one_line_and_exit_2(tmp_path, pfrun):
    plan_file = write_plan(tmp_path / "plan.json", plan("pixart-tiny", degrees={"pipefusion": 2}, patches=99,
                                                        warmup_steps=1))
    res = pfrun("--plan", plan_file)
    assert res.code == 2 and res.err.count("\n") == 1 and "patches" in res.err


def test_reference_reports_difference_and_psnr(tmp_path):
    plan_file = write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=3, degrees={"pipefusion": 2},
                                                        patches=2, warmup_steps=1))
    res = run_subprocess("runtime", "--plan", plan_file, "--reference", "--out", tmp_path / "i.png", timeout=120)
    assert res.code == 0, res.err
    assert "vs serial: max abs diff" in res.out and "PSNR" in res.out


def test_data_parallel_writes_one_image_per_replica(tmp_path):
    plan_file = write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=2, degrees={"data": 2}))
    res = run_subprocess("runtime", "--plan", plan_file, "--out", tmp_path / "img.png", "--json", timeout=120)
    assert res.code == 0, res.err
    assert json.loads(res.out)["images"] == [str(tmp_path / "img.png"), str(tmp_path / "img-1.png")]


def test_data_parallel_replicas_take_their_own_prompts(tmp_path, pfrun):
    from runtime.run import execute, job_for
    from profiles.catalog.models import load_model

    p = plan("pixart-tiny", steps=2, degrees={"data": 2})
    preset = load_model("pixart-tiny")
    two = execute(job_for(p, preset, prompts=("a cat", "a dog"), decode=False))
    cat = execute(job_for(plan("pixart-tiny", steps=2), preset, prompts=("a cat",), decode=False))
    dog = execute(job_for(plan("pixart-tiny", steps=2), preset, prompts=("a dog",), seed=1, decode=False))
    assert float((two.latents[0] - cat.latents[0]).abs().max()) == 0.0
    assert float((two.latents[1] - dog.latents[0]).abs().max()) == 0.0
    plan_file = write_plan(tmp_path / "plan.json", p)
    assert pfrun("--plan", plan_file, "--prompt", "a cat", "--prompt", "a dog").code == 0


def test_bad_prompt_embeds_file_is_one_line_and_exit_2(tmp_path, pfrun):
    import torch

    plan_file = write_plan(tmp_path / "plan.json", plan("sd3-tiny", steps=1))
    torch.save({"cond": {"prompt_embedz": torch.zeros(1, 8, 64)}, "uncond": {}}, tmp_path / "e.pt")
    res = pfrun("--plan", plan_file, "--prompt-embeds", tmp_path / "e.pt")
    assert res.code == 2 and res.err.count("\n") == 1 and "prompt_embedz" in res.err
    good = {"prompt_embeds": torch.zeros(1, 8, 64), "pooled_embeds": torch.zeros(1, 48)}
    torch.save({"cond": {**good, "prompt_embeds": torch.zeros(1, 8, 32)}, "uncond": good}, tmp_path / "w.pt")
    res = pfrun("--plan", plan_file, "--prompt-embeds", tmp_path / "w.pt")
    assert res.code == 2 and res.err.count("\n") == 1 and "width 64" in res.err


def test_cuda_without_a_gpu_is_one_line_and_exit_2_before_any_rank(tmp_path, pfrun, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plan_file = write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=1, degrees={"data": 2}))
    res = pfrun("--plan", plan_file, "--device", "cuda")
    assert res.code == 2 and res.err.count("\n") == 1
    assert "--device" in res.err and "no CUDA device" in res.err and "rank" not in res.err
