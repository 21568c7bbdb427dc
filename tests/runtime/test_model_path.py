"""``--model-path``: a local diffusers folder (transformer/, vae/, scheduler/) read offline."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_subprocess

from .helpers import plan, write_plan


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    import diffusers

    from runtime.model_build import build_transformer
    from profiles.catalog.models import load_model

    root = tmp_path_factory.mktemp("sd3-folder")
    preset = load_model("sd3-tiny")
    build_transformer(preset, seed=7).save_pretrained(root / "transformer")
    diffusers.AutoencoderKL(**preset.vae_config).save_pretrained(root / "vae")
    getattr(diffusers, preset.scheduler)(**preset.scheduler_config).save_pretrained(root / "scheduler")
    return root


def test_a_local_diffusers_folder_runs_pipefusion_exactly(folder, tmp_path):
    plan_file = write_plan(tmp_path / "plan.json", plan("sd3-tiny", steps=3, degrees={"pipefusion": 2}, patches=2,
                                                        warmup_steps=3))
    res = run_subprocess("runtime", "--plan", plan_file, "--model-path", folder, "--reference", "--json",
                         "--out", tmp_path / "i.png", timeout=180)
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["model"] == folder.name
    assert report["reference"]["max_abs_diff"] == 0.0
    assert (tmp_path / "i.png").exists()


def test_a_folder_without_transformer_is_one_line(tmp_path, pfrun):
    (tmp_path / "empty").mkdir()
    plan_file = write_plan(tmp_path / "plan.json", plan("sd3-tiny", steps=1))
    res = pfrun("--plan", plan_file, "--model-path", tmp_path / "empty")
    assert res.code == 2 and res.err.count("\n") == 1
