"""runtime.sampling: the pipeline's timesteps, input scaling, and patch steps identical to whole steps."""

from __future__ import annotations

import pytest
import torch

from runtime.sampling import Sampling

SCHEDULERS = {
    "dpm-karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpm-sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "ddpm": ("DDPMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "flow-dynamic": ("FlowMatchEulerDiscreteScheduler", {"use_dynamic_shifting": True}),
}


def sampling(name: str, seed: int = 3) -> Sampling:
    import diffusers

    cls, config = SCHEDULERS[name]
    extra = {"timestep_kwargs": {"mu": 0.8}} if config.get("use_dynamic_shifting") else {}
    return Sampling(scheduler=getattr(diffusers, cls)(**config), steps=5,
                    generator=torch.Generator().manual_seed(seed), **extra)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_patch_steps_after_warmup_equal_whole_latent_steps(name):
    """Two whole steps, then three steps in row patches (3 + 5 rows): bit-identical to five whole steps,
    stochastic schedulers included (their noise is drawn full-size, in the serial order, and sliced)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 6, generator=gen)
    outputs = [torch.randn(1, 4, 8, 6, generator=gen) for _ in range(5)]
    whole = sampling(name).start()
    ref = x.clone()
    for step, (t, eps) in enumerate(zip(whole.timesteps, outputs)):
        whole.model_input(ref, step, t)
        ref = whole.step(eps, t, ref)
    patched = sampling(name).start()
    y = x.clone()
    bounds = [(0, 3), (3, 8)]
    for step, (t, eps) in enumerate(zip(patched.timesteps, outputs)):
        if step < 2:
            y = patched.step(eps, t, y)
            continue
        for patch, (a, b) in enumerate(bounds):
            y[:, :, a:b] = patched.step_rows(eps[:, :, a:b], t, y[:, :, a:b], patch=patch, bounds=bounds,
                                             full_shape=y.shape)
    assert torch.equal(y, ref)


def test_model_input_at_a_step_is_the_serial_scaling_without_stepping():
    """PipeFusion's stage 0 scales inputs but never steps: model_input(step) is what the serial loop sees."""
    serial = sampling("euler").start()
    stage0 = sampling("euler").start()
    x = torch.randn(1, 4, 8, 6, generator=torch.Generator().manual_seed(1))
    for step, t in enumerate(serial.timesteps):
        expected = serial.model_input(x, step, t)
        assert torch.equal(stage0.model_input(x, step, t), expected)
        x = serial.step(torch.zeros_like(x), t, x)


def test_flux_timesteps_are_the_pipelines():
    """FluxPipeline's sigmas and mu give its timesteps, not set_timesteps(T)'s."""
    import diffusers
    import numpy as np

    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

    from runtime.families import adapter_for

    sched = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)

    class Pipe:
        scheduler = sched

    recipe = adapter_for("flux").timestep_recipe(Pipe(), 4, (1, 16, 64, 64))
    mine = Sampling(scheduler=sched, steps=4, **recipe).start().timesteps
    ref = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    expected, _ = retrieve_timesteps(ref, 4, "cpu", sigmas=np.linspace(1.0, 1 / 4, 4),
                                     mu=calculate_shift(1024, 256, 4096, 0.5, 1.15))
    assert torch.equal(mine, expected)
