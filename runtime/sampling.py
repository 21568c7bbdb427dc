"""The sampling side of a run as the diffusers pipeline does it: timesteps, input scaling, steps, noise.

Every loop strategy denoises with diffusers' own scheduler. What differs between the
pipelines is *how they drive it*, and a run that drives it otherwise gives another image:

* **timesteps**: FluxPipeline passes its own sigmas (``linspace(1, 1/T, T)``) and a
  resolution-dependent ``mu`` for dynamic shifting; SD3 passes ``mu`` when its scheduler
  shifts dynamically; PixArt, HunyuanDiT call ``retrieve_timesteps`` plainly; DiT calls
  ``set_timesteps``. The family adapter says which (:meth:`FamilyAdapter.timestep_kwargs`),
  using the pipeline module's own ``calculate_shift``, and :class:`Sampling` applies it
  through the pipeline module's ``retrieve_timesteps``;
* **input scaling**: PixArt, DiT and HunyuanDiT call ``scale_model_input`` before every
  forward (Euler-type schedulers divide by ``sqrt(sigma² + 1)``), SD3 and Flux do not;
  ``init_noise_sigma`` is applied where the pipeline prepares the latent
  (``pipe.prepare_latents``, see :mod:`runtime.pipeline_prep`);
* **quirks** kept: DiTPipeline steps the *scaled* latent (``steps_scaled_input``);
* **noise**: one ``torch.Generator`` draws the initial latent and then every step's noise
  (DDPM, SDE solvers), in that order, exactly as ``pipe(generator=g)`` threads it.

:meth:`Sampling.start` gives a loop its own :class:`Sampler` (a copy of the scheduler with
the pipeline's timesteps). Whole-latent loops call :meth:`Sampler.model_input` and
:meth:`Sampler.step`; PipeFusion's last stage steps row patches with
:meth:`Sampler.step_rows`, which stays exact for multistep schedulers (each patch keeps
its rows of the solver history) and for stochastic ones (the step's noise is drawn once,
full-size, from the run's generator in diffusers' order, and each patch takes its rows).
"""

from __future__ import annotations

import copy
import inspect
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

__all__ = ["Sampler", "Sampling", "drawn_noise", "split_scheduler"]


@dataclass
class Sampling:
    """How one replica samples: the scheduler, the pipeline's timestep recipe, the run's generator."""

    scheduler: Any
    """diffusers' scheduler, configured but without timesteps (every :meth:`start` copies it)."""
    steps: int
    timestep_kwargs: dict[str, Any] = field(default_factory=dict)
    """``sigmas`` / ``mu`` as the pipeline passes them to ``retrieve_timesteps``."""
    set_timesteps_only: bool = False
    """DiT's pipeline calls ``scheduler.set_timesteps(T)`` instead of ``retrieve_timesteps``."""
    begin_index: int | None = None
    """Flux sets ``set_begin_index(0)`` before its loop."""
    scales_input: bool = True
    """Whether the pipeline calls ``scale_model_input`` before each forward."""
    generator: torch.Generator | None = None
    """The one generator of the image: it drew the initial latent; step noise comes next."""
    steps_scaled_input: bool = False
    """DiTPipeline overwrites its latent with ``scale_model_input``'s result and steps that (the same
    for DDIM/DPM-Solver, whose scaling is the identity; not for Euler-type schedulers)."""

    def start(self) -> Sampler:
        """A fresh scheduler copy with the pipeline's timesteps, for one loop."""
        return Sampler(self)


class Sampler:
    """One loop's scheduler: the timesteps, the scaled model input, and the steps."""

    def __init__(self, sampling: Sampling) -> None:
        self.sampling = sampling
        self.sched = prepared(sampling)
        self.timesteps: torch.Tensor = self.sched.timesteps
        self._input = copy.deepcopy(self.sched)  # scales inputs at a step index of its own (stage 0 never steps)
        self._input_base: int | None = None
        self._patches: list[Any] | None = None
        self._noise: torch.Tensor | None = None

    def model_input(self, latent: torch.Tensor, step: int, t: torch.Tensor) -> torch.Tensor:
        """The latent the transformer sees at ``step``: ``scale_model_input`` where the pipeline calls it."""
        sched = self._input
        if not self.sampling.scales_input or not hasattr(sched, "scale_model_input"):
            return latent
        if hasattr(sched, "_step_index"):
            if self._input_base is None:
                out = sched.scale_model_input(latent, t)  # the first call finds the start index as diffusers does
                self._input_base = sched._step_index if sched._step_index is not None else 0
                return out
            sched._step_index = self._input_base + step
        return sched.scale_model_input(latent, t)

    def step(self, noise: torch.Tensor, t: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """One scheduler step on the whole latent (the pipeline's ``scheduler.step``)."""
        self.sched.is_scale_input_called = True  # scaled by model_input (Euler warns otherwise)
        if self.sampling.steps_scaled_input:
            latent = self.sched.scale_model_input(latent, t)
        return self.sched.step(noise, t, latent, **self._step_kwargs(self.sched), return_dict=False)[0]

    def step_rows(self, noise: torch.Tensor, t: torch.Tensor, rows_latent: torch.Tensor, *, patch: int,
                  bounds: list[tuple[int, int]], full_shape: torch.Size) -> torch.Tensor:
        """One step of the latent rows of ``patch`` (``bounds``: latent-row range of every patch).

        At the first patch step the scheduler is split into one copy per patch
        (:func:`split_scheduler`); a step's noise is drawn once, for the whole latent, when
        its first patch steps (:func:`drawn_noise`), so every patch sees the rows of the
        draw the serial run makes.
        """
        if self._patches is None:
            self._patches = [split_scheduler(self.sched, full_shape, slice(a, b)) for a, b in bounds]
        sched = self._patches[patch]
        sched.is_scale_input_called = True
        a, b = bounds[patch]
        if patch == 0:
            self._noise = None
        if self.sampling.steps_scaled_input:
            rows_latent = sched.scale_model_input(rows_latent, t)
        with drawn_noise(sched, full_shape, slice(a, b), self):
            return sched.step(noise, t, rows_latent, **self._step_kwargs(sched), return_dict=False)[0]

    def _step_kwargs(self, sched: Any) -> dict[str, Any]:
        params = inspect.signature(sched.step).parameters
        return {"generator": self.sampling.generator} if "generator" in params else {}


def prepared(sampling: Sampling) -> Any:
    """A copy of the scheduler with the pipeline's timesteps (``retrieve_timesteps`` of diffusers)."""
    from diffusers.pipelines.pixart_alpha.pipeline_pixart_alpha import retrieve_timesteps

    sched = copy.deepcopy(sampling.scheduler)
    if sampling.set_timesteps_only:
        sched.set_timesteps(sampling.steps)
    else:
        retrieve_timesteps(sched, None if "sigmas" in sampling.timestep_kwargs else sampling.steps, "cpu",
                           **sampling.timestep_kwargs)
    if sampling.begin_index is not None:
        sched.set_begin_index(sampling.begin_index)
    return sched


@contextmanager
def drawn_noise(sched: Any, full_shape: torch.Size, rows: slice, holder: Any) -> Iterator[None]:
    """While a patch copy of ``sched`` steps: its noise draw is the patch's rows of one full-size draw.

    diffusers' schedulers draw step noise through their module's ``randn_tensor`` with the
    shape of what they step. A patch's scheduler asks for the patch's shape; the first
    request of a step (``holder._noise`` None) draws the whole latent's noise from the same
    generator, exactly the draw of the serial run, and every patch of the step gets its rows.
    The module attribute is restored on exit (a rank is one process; nothing else steps meanwhile).
    """
    module = sys.modules[type(sched).__module__]
    original = getattr(module, "randn_tensor", None)
    if original is None:
        yield
        return

    def rows_of_full(shape: Any, generator: Any = None, device: Any = None, dtype: Any = None, **kw: Any) -> Any:
        if getattr(holder, "_noise", None) is None:
            full = (*tuple(shape)[:2], full_shape[2], *tuple(shape)[3:])
            holder._noise = original(full, generator=generator, device=device, dtype=dtype, **kw)
        return holder._noise[:, :, rows]

    module.randn_tensor = rows_of_full
    try:
        yield
    finally:
        module.randn_tensor = original


def split_scheduler(sched: Any, full_shape: torch.Size, rows: slice) -> Any:
    """A copy of ``sched`` for one patch: every tensor of the latent's shape in its state
    (DPM-Solver's previous model outputs, last sample, ...) cut to the patch's latent rows.

    The schedulers used here are elementwise, so a copy stepping only these rows computes
    exactly what the whole-latent scheduler computes for them.
    """
    def cut(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.shape == full_shape:
            return value[:, :, rows].clone()
        if isinstance(value, list):
            return [cut(v) for v in value]
        if isinstance(value, tuple):
            return tuple(cut(v) for v in value)
        return value

    out = copy.deepcopy(sched)
    for name, value in list(vars(out).items()):
        setattr(out, name, cut(value))
    return out
