"""Joining torchrun as one rank; the same PipeFusion paths on CUDA when a GPU is present."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT

from .helpers import max_diff, plan, run, write_plan


@pytest.mark.slow
def test_pfrun_joins_torchrun_ranks(tmp_path):
    import subprocess

    plan_file = write_plan(tmp_path / "plan.json", plan("sd3-tiny", steps=3, degrees={"pipefusion": 2}, patches=2,
                                                        warmup_steps=3))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "runtime",
                           "--plan", str(plan_file), "--reference", "--out", str(tmp_path / "i.png")],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "max abs diff 0 (latent), PSNR inf" in proc.stdout
    assert (tmp_path / "i.png").exists()


@pytest.mark.gpu
@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["pixart-tiny", "sd3-tiny", "flux-tiny", "dit-tiny"])
def test_cuda_one_rank_patches_reproduce_serial_with_full_warmup(name):
    serial = run(plan(name), device="cuda")
    fresh = run(plan(name, patches=4, warmup_steps=4), device="cuda")
    stale = run(plan(name, patches=4, warmup_steps=1), device="cuda")
    assert max_diff(fresh, serial) <= 1e-4
    assert stale.latents[0].isfinite().all()


@pytest.mark.slow
def test_a_torchrun_rank_that_raises_says_so_in_one_line(tmp_path):
    """Under torchrun each process is one rank: its exception is pfrun's one line naming it."""
    import os
    import subprocess

    plan_file = write_plan(tmp_path / "plan.json", plan("dit-tiny", steps=3, degrees={"pipefusion": 2}, patches=2,
                                                        warmup_steps=1))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "runtime",
                           "--plan", str(plan_file), "--timeout", "10"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT,
                          env={**os.environ, "PFRUN_FAULT": "1:1:raise"})
    assert proc.returncode != 0
    assert "pfrun: error: rank 1 failed: RuntimeError: injected fault at step 1" in proc.stderr, proc.stderr[-2000:]
    assert 'worker.py", line' not in proc.stderr  # no raw traceback of the rank (torchrun prints its own)
