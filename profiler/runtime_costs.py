"""What a generation spends outside the timed transformer layers, measured by ``pfplan profile compute``.

The per-layer table (:mod:`profiler.compute`) prices the blocks, the embeddings
and the output layer. A real run also spends time on:

* the **VAE decode** of the final latent to a PNG, once per image (``runtime.worker.decode_png``,
  the function the runtime's ``vae decode`` span wraps; the preset's AutoencoderKL: for
  tiny presets built from ``preset.vae_config`` with seeded random weights, exactly as
  ``runtime.model_loading.load_vae`` builds it; real presets need their weights, so their
  profiles leave it out and the simulator says it did not price it);
* the **scheduler step** (the preset's diffusers scheduler, on the whole latent and on each
  patch's rows), once per item on the last stage;
* the **pass overhead**: a whole-model forward, block after block as the runtime calls it,
  takes longer than embed + Σ blocks + final timed one at a time (the Python between blocks,
  and weights of many distinct blocks not staying in cache the way one block's do when it
  is called in a loop), and the **first** forward of a fresh process pays allocator and kernel
  set-up once. Both come from the full model (every block), so they are measured for tiny
  presets, or when asked (``--pass-overhead``) and the model fits;
* the **step overhead** of the runtime's own loop: ``runtime.strategies.serial.denoise``
  run on one rank over the same whole model (the serial / CFG-parallel path), per step,
  minus the warm forward (timed right after each loop) and the scheduler step: the conditioning kwargs, unpatchify,
  guidance and bookkeeping the runtime wraps around each forward.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from profiles.costs.cost_model import EMBED, FINAL
from profiles.catalog.models import ModelPreset
from profiles.costs.profile_format import PassOverhead, PatchPassOverhead, Timing, VaeTiming

PRICED_SPANS = frozenset({"embed", "blocks", "final", "scheduler"})
"""The runtime's spans the simulator prices from the layer table and the scheduler timings."""


def priced_s(events: list[dict], steps: set[int], scheduler_s: float | None) -> float:
    """Seconds of ``events`` (trace events, µs) at ``steps`` that the simulator prices on its own: the
    embed, blocks and final spans as recorded, each scheduler span at ``scheduler_s`` (the plain step
    the profile times), or as recorded when that is None."""
    spans = [e for e in events if e["name"] in PRICED_SPANS and e["args"].get("step") in steps]
    return sum(scheduler_s if e["name"] == "scheduler" and scheduler_s is not None else e["dur"] * 1e-6
               for e in spans)


def time_vae_decode(preset: ModelPreset, resolutions_px: tuple[int, ...], samples: Callable[[Callable], list[float]],
                    *, device: str, dtype: Any, seed: int) -> list[VaeTiming]:
    """The runtime's decode of one latent to PNG bytes (``vae.decode``, conversion to 8-bit, PNG
    encoding) per resolution; [] when the preset has no buildable VAE."""
    import statistics

    import torch

    from runtime.model_loading import load_vae  # built exactly as pfrun builds it
    from runtime.worker import decode_png  # exactly what the runtime's "vae decode" span runs

    vae = load_vae(preset, model_path=None, seed=seed, device=device, dtype=dtype)
    if vae is None:
        return []
    channels = int(preset.vae_config.get("latent_channels", preset.arch.latent_channels))
    out = []
    for res in resolutions_px:
        rows, cols = preset.latent_size(res, res)
        latent = torch.randn(1, channels, rows, cols, device=device, dtype=dtype)
        start = time.perf_counter()
        decode_png(vae, latent)  # ends with a copy to the CPU: synchronised
        first = time.perf_counter() - start
        runs = sorted(samples(lambda: decode_png(vae, latent)))
        deciles = statistics.quantiles(runs, n=10, method="inclusive") if len(runs) > 1 else runs * 9
        out.append(VaeTiming(height_px=res, width_px=res, median_s=statistics.median(runs), p10_s=deciles[0],
                             p90_s=deciles[-1], repeats=len(runs), first_s=first))
    return out


def time_scheduler_step(preset: ModelPreset, resolution_px: int, patch_counts: list[int],
                        samples: Callable[[Callable], list[float]], summarise: Callable[..., Timing], *,
                        device: str, dtype: Any) -> list[Timing]:
    """One scheduler step (in its steady state: the middle timestep, higher-order history filled)
    on the whole latent and on one patch's rows for each patch count."""
    import diffusers
    import torch

    cls = getattr(diffusers, preset.scheduler)
    rows, cols = preset.latent_size(resolution_px, resolution_px)
    p = preset.arch.patch_size
    out: list[Timing] = []
    for m in patch_counts:
        patch_rows = rows // m
        sched = cls(**preset.scheduler_config)
        sched.set_timesteps(max(preset.default_steps, 4))
        mid = len(sched.timesteps) // 2
        t = sched.timesteps[mid]
        gen = torch.Generator(device="cpu").manual_seed(0)
        sample = torch.randn(1, preset.arch.latent_channels, patch_rows, cols, generator=gen).to(device, dtype)
        noise = torch.randn(sample.shape, generator=gen).to(device, dtype)

        def step() -> None:
            if hasattr(sched, "_step_index"):
                sched._step_index = mid  # stay on one timestep: a steady-state step, not the end of the schedule
            sched.step(noise, t, sample, return_dict=False)

        tokens = (patch_rows // p) * (cols // p)
        out.append(summarise(samples(step), query_tokens=tokens, kv_tokens=tokens, batch=1))
    return out


class FullForward:
    """The whole model (every block), timed cold once at construction and warm later."""

    def __init__(self, preset: ModelPreset, *, resolution_px: int, batch: int, device: str, dtype: Any,
                 seed: int, sync: Callable[[], None]) -> None:
        import torch

        from runtime.model_build import build_transformer

        self.preset, self.resolution_px, self.device, self.dtype, self.seed = preset, resolution_px, device, dtype, seed
        self.model = build_transformer(preset, device=device, dtype=None if dtype == torch.float32 else dtype,
                                       seed=seed)
        self.cold_batch = batch
        inputs = self.inputs(batch)
        with torch.inference_mode():
            sync()
            start = time.perf_counter()
            self.call(inputs)
            sync()
            self.cold_s = time.perf_counter() - start

    def inputs(self, batch: int) -> dict[str, Any]:
        from runtime.forward_inputs import forward_inputs

        rows, cols = self.preset.token_grid(self.resolution_px, self.resolution_px)
        return forward_inputs(self.preset, rows=rows, cols=cols, batch=batch, device=self.device, dtype=self.dtype,
                              seed=self.seed)

    def call(self, inputs: dict[str, Any]) -> None:
        from runtime.families import adapter_for

        try:
            self.model(**inputs)
        except RuntimeError:
            if not adapter_for(self.preset.family).forward_may_fail_after_blocks:
                raise
            # DiT's unpatchify may refuse the learned-sigma output after the blocks ran (profiler_compute does the same)

    def _stage_setup(self, model: Any, batch: int, *, steps: int, warmup: int, patch_rows: tuple[int, ...]) -> Any:
        """One rank's :class:`~runtime.strategies.base.StageSetup` over ``model``: every block, one stage."""
        import diffusers
        import torch

        from runtime.dist_context import DistContext
        from runtime.measure import Recorder
        from runtime.model_inputs import initial_latent, make_conditioning
        from runtime.strategies.base import ModelView, PlanShare, RankInputs, RankPlace, Recording, StageSetup
        from runtime.strategies.cfg import BatchGuidance, Unguided

        preset = self.preset
        cond = make_conditioning(preset, seed=self.seed)
        cfg = preset.uses_cfg and batch == 2
        branch = cond.branches(("uncond", "cond") if cfg else ("cond",))
        branch = type(branch)(**{k: (v.to(self.device) if v is not None else None) for k, v in vars(branch).items()})
        latent = initial_latent(preset, self.resolution_px, self.resolution_px, self.seed,
                                dtype=self.dtype).to(self.device)
        rows, cols = preset.token_grid(self.resolution_px, self.resolution_px)
        scheduler = getattr(diffusers, preset.scheduler)(**preset.scheduler_config)
        return StageSetup(
            model=ModelView(preset=preset, transformer=model, scheduler=scheduler, rows=rows, cols=cols),
            inputs=RankInputs(branch=branch, latent=latent,
                              guidance=BatchGuidance(cond.guidance_scale) if cfg else Unguided(),
                              generator=torch.Generator(device="cpu").manual_seed(self.seed)),
            share=PlanShare(steps=steps, warmup=warmup, patch_rows=patch_rows,
                            layers=range(len(preset.arch.block_kinds()))),
            place=RankPlace(dist=DistContext.single({}, 60.0, torch.device(self.device)), pipeline=(0,)),
            recording=Recording(rec=Recorder(rank=0, cuda=self.device.startswith("cuda"))))

    def runtime_step_excess_s(self, batch: int, scheduler_s: float, *, steps: int,
                              repeats: int) -> tuple[float, float]:
        """(median seconds per step of the runtime's own serial loop, median excess per step over
        the warm forward and ``scheduler_s``).

        The loop is ``runtime.strategies.serial.denoise`` on one rank, no PipeFusion: the
        path serial and CFG-parallel plans run. Each repeat times one loop and then ``steps``
        forwards right after it, so load from other jobs that comes and goes moves both sides
        of a difference alike.
        """
        import statistics

        from runtime.strategies.serial import denoise

        rows = self.preset.token_grid(self.resolution_px, self.resolution_px)[0]
        inputs = self.inputs(batch)
        loops, excess = [], []
        for i in range(repeats + 1):  # the first pair is a warm-up
            setup = self._stage_setup(self.model, batch, steps=steps, warmup=steps, patch_rows=(rows,))
            start = time.perf_counter()
            denoise(setup)
            per_step = (time.perf_counter() - start) / steps
            start = time.perf_counter()
            for _ in range(steps):
                self.call(inputs)
            forward = (time.perf_counter() - start) / steps
            if i:
                loops.append(per_step)
                excess.append(per_step - forward - scheduler_s)
        return statistics.median(loops), max(statistics.median(excess), 0.0)

    def runtime_patch_excess_s(self, batch: int, patches: int, *, steps: int, repeats: int,
                               scheduler_s: float | None = None) -> tuple[float, float]:
        """(median seconds per patch pass of the runtime's PipeFusion loop, median per patch pass of its
        time outside what the simulator prices on its own: the embed, blocks and final spans, and per
        scheduler span ``scheduler_s``, the profiled plain scheduler step on a patch's rows).

        The scheduler is subtracted at its profiled figure, not its span, as the serial loop's excess
        is: the runtime's per-patch step (``step_rows``: the patch's own scheduler state swapped in and
        out) took 0.27 ms a patch against a plain step's 0.09 ms (pixart-tiny, 8 patches, 2026-12-04),
        and the simulator prices the plain step. Without ``scheduler_s`` the span is subtracted.

        The loop is ``runtime.strategies.pipefusion`` on one rank (one stage, ``patches`` patches,
        one warm-up step): what a PipeFusion rank wraps around each patch (the unit loop, the
        step context, guidance, the latent rows' copies), which the serial loop's per-step excess
        (:meth:`runtime_step_excess_s`) over-states for a pass over a fraction of the image. Only the
        patch steps after the first are counted (the first splits the scheduler per patch, once
        per run). Both sides come from one loop's own spans, so load moves them alike. It runs on
        a second copy of the model: the loop installs stale-K/V attention on its blocks.
        """
        import statistics

        from runtime.model_build import build_transformer
        from runtime.strategies.pipefusion import PipeFusion
        from simulator.plan import patch_rows

        import torch

        if steps < 3:
            raise ValueError("a patch loop needs a warm-up step, a first patch step and one to count")
        rows = self.preset.token_grid(self.resolution_px, self.resolution_px)[0]
        model = getattr(self, "_patch_model", None)
        if model is None:
            model = self._patch_model = build_transformer(
                self.preset, device=self.device, dtype=None if self.dtype == torch.float32 else self.dtype,
                seed=self.seed)
        counted = set(range(2, steps))  # step 0 warm-up, step 1 the first patch step
        passes = len(counted) * patches
        loops, excess = [], []
        for i in range(repeats + 1):  # the first is a warm-up
            setup = self._stage_setup(model, batch, steps=steps, warmup=1,
                                      patch_rows=tuple(patch_rows(rows, patches)))
            loop = PipeFusion().prepare(setup.model, setup.share, setup.place.dist)
            loop.run(setup)
            ends = setup.recording.step_end_s
            window = ends[-1] - ends[1]
            if i:
                loops.append(window / passes)
                excess.append((window - priced_s(setup.recording.rec.events, counted, scheduler_s)) / passes)
        return statistics.median(loops), max(statistics.median(excess), 0.0)

    def paired_block_excess_s(self, inputs: dict[str, Any], *, repeats: int) -> float:
        """Median over repeats of (one whole forward − its embed and final, timed inside it − each of
        its blocks called again at once on the inputs it got, three times in a row, per call) / blocks.

        What a forward spends beyond its blocks timed warm one by one, as the layer table times
        them; each repeat's two sides are timed back to back, so load from other jobs that comes
        and goes stretches both alike instead of turning into overhead (a difference of medians
        taken seconds apart did: 0.06 to 2.1 ms per block on this VM under load).
        """
        import statistics

        from profiler.block_probe import ForwardCapture
        from runtime.forward_inputs import output_module
        from runtime.model_build import transformer_blocks

        blocks = transformer_blocks(self.model, self.preset.family)
        excess = []
        for _ in range(repeats):
            capture = ForwardCapture(self.model, blocks, time.perf_counter, lambda: None,
                                     output_module(self.preset, self.model))
            try:
                start = time.perf_counter()
                self.call(inputs)
                whole = time.perf_counter() - start
                if "end" not in capture.marks:
                    continue
                outside = capture.embed_s + capture.final_s
            finally:
                capture.remove()
            warm = 0.0
            for index, block in enumerate(blocks):
                args, kwargs = capture.calls[index]
                block(*args, **kwargs)
                start = time.perf_counter()
                for _ in range(3):
                    block(*args, **kwargs)
                warm += (time.perf_counter() - start) / 3
            excess.append(whole - outside - warm)
        return max(statistics.median(excess), 0.0) / len(blocks) if excess else 0.0

    def overheads(self, layers: dict[str, list[Timing]], batches: tuple[int, ...],
                  samples: Callable[[Callable], list[float]], scheduler: list[Timing] | None = None,
                  *, loop_repeats: int = 5, patch_counts: tuple[int, ...] = ()) -> list[PassOverhead]:
        """Warm full forwards against the layer table's sum for the same shape, per batch; with the
        runtime's loops (serial, and PipeFusion at each of ``patch_counts`` ≥ 2) where it runs the batch."""
        import statistics

        import torch

        from simulator.plan import patch_rows

        tokens = self.preset.image_tokens(self.resolution_px)
        kinds = self.preset.arch.block_kinds()
        out = []
        with torch.inference_mode():
            for batch in batches:
                table = {kind: {t.key: t.median_s for t in timings} for kind, timings in layers.items()}
                fastest = {kind: {t.key: t.min_s for t in timings} for kind, timings in layers.items()}
                key = (tokens, tokens, batch, 1)
                if any(key not in table.get(kind, {}) for kind in (EMBED, FINAL, *set(kinds))):
                    continue
                inputs = self.inputs(batch)
                runs = samples(lambda: self.call(inputs))
                forward = statistics.median(runs)
                paired = self.paired_block_excess_s(inputs, repeats=max(len(runs), 5))
                parts = table[EMBED][key] + table[FINAL][key] + sum(table[kind][key] for kind in kinds)

                first = max(self.cold_s - forward, 0.0) if batch == self.cold_batch else 0.0
                sched = next((t.median_s for t in scheduler or [] if t.query_tokens == tokens), None)
                step = loop = None
                runs_batch = batch == 1 or (batch == 2 and self.preset.uses_cfg)  # what the runtime can run
                if sched is not None and runs_batch:
                    loop, step = self.runtime_step_excess_s(batch, sched, steps=max(self.preset.default_steps, 2),
                                                            repeats=loop_repeats)
                patch_passes = []
                rows, cols = self.preset.token_grid(self.resolution_px, self.resolution_px)
                for m in (m for m in patch_counts if m >= 2) if runs_batch else ():
                    patch_tokens = max(patch_rows(rows, m)) * cols
                    patch_sched = next((t.median_s for t in scheduler or [] if t.query_tokens == patch_tokens), None)
                    patch_loop, patch_pass = self.runtime_patch_excess_s(
                        batch, m, steps=max(self.preset.default_steps, 4), repeats=loop_repeats,
                        scheduler_s=patch_sched)
                    patch_passes.append(PatchPassOverhead(patches=m, query_tokens=patch_tokens,
                                                          loop_s=patch_loop, pass_s=patch_pass, repeats=loop_repeats))
                out.append(PassOverhead(batch=batch, query_tokens=tokens, forward_s=forward, layers_sum_s=parts,
                                        block_s=paired, first_pass_s=first,
                                        runtime_step_s=loop, step_s=step, repeats=len(runs),
                                        patch_passes=patch_passes))
        return out

