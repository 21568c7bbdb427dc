"""``pfplan profile compute``: time every layer kind of a model for the shapes plans need.

The model is built with one block of each kind (config overrides, so Flux-size blocks fit
on one device) at its real dimensions with seeded random weights. For each resolution
``S`` (a ``rows × cols`` token grid) and batch, the reduced model runs forward on:

* the whole image (``q = kv = S``);
* PipeFusion patches: ``rows/M`` token rows as queries, attending over all ``S`` keys
  (:mod:`profiler.block_probe`'s stale-K/V attention), for every ``M`` dividing ``rows``
  up to ``--max-patches``; the same shape serves sequence-parallel and patch-parallel shards;
* local shards: ``kv = S/N`` for N = 2, 4, each with its own column of patch splits;
* tensor-parallel widths: blocks narrowed to 1/s of their heads and MLP
  (:mod:`profiler.tensor_shard`) for each s dividing the head count (up to 4).

Each block is then called on its captured arguments: warm-up calls, then repeats, median
and spread (on CUDA with synchronisation). Embed and final come from the same forwards'
hook timestamps. The VAE decode, the scheduler step and the whole-forward overhead are
timed too (:mod:`profiler.runtime_costs`), Ring's attention core against SDPA
(:mod:`profiler.ring_core`), and, for tiny presets, the once-per-run costs from the runtime's
own launches (:mod:`profiler.runtime_launch`). The result is a :class:`~profiles.costs.profile_format.Profile`.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from profiles.costs.cost_model import EMBED, FINAL
from profiles.errors import InputError
from profiles.catalog.models import ModelPreset
from profiles.costs.profile_format import Profile, ProfileProvenance, RingAttentionTiming, SoftwareStack, Timing
from profiles.costs.workloads import ComputeSettings, patch_splits, workloads

LAUNCHES = 5
"""Fresh serial runtime launches per profile (``runtime_launch``): each pays a process start and
a model build (2-3 s for the tiny presets), and the decode is priced from their median."""
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
GPU_NAME_HINTS = ((("H200",), "h200"), (("H100",), "h100-sxm"), (("A100", "PCIE"), "a100-pcie"),
                  (("A100",), "a100-sxm"), (("L40S",), "l40s"), (("L40",), "l40"), (("L20",), "l20"),
                  (("4090",), "rtx4090"), (("T4",), "t4"))
"""Words of a CUDA device name → catalog GPU (first match wins; --gpu overrides)."""


def software_stack(device: str, dtype: str, threads: int | None) -> SoftwareStack:
    import diffusers
    import torch

    cuda = torch.version.cuda if device.startswith("cuda") else None
    nccl = None
    kernel = "torch.sdpa(cpu)"
    if device.startswith("cuda"):
        try:
            nccl = ".".join(map(str, torch.cuda.nccl.version()))
        except Exception:  # noqa: BLE001 - NCCL missing is recorded as None
            nccl = None
        enabled = [name for name, on in (("flash", torch.backends.cuda.flash_sdp_enabled()),
                                         ("mem_efficient", torch.backends.cuda.mem_efficient_sdp_enabled()),
                                         ("cudnn", torch.backends.cuda.cudnn_sdp_enabled()),
                                         ("math", torch.backends.cuda.math_sdp_enabled())) if on]
        kernel = f"torch.sdpa({','.join(enabled)})"
    return SoftwareStack(torch=torch.__version__, diffusers=diffusers.__version__,
                         python=platform.python_version(), cuda=cuda, nccl=nccl, attention_kernel=kernel,
                         dtype=dtype, threads=threads if not device.startswith("cuda") else None)


def device_identity(device: str, gpu: str | None) -> tuple[str, str]:
    """(catalog name, the device's own name)."""
    if not device.startswith("cuda"):
        name = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as cpuinfo:
                for line in cpuinfo:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        return gpu or "cpu", name
    import torch

    name = torch.cuda.get_device_name(torch.device(device))
    if gpu:
        return gpu, name
    return catalog_gpu_for(name), name


def catalog_gpu_for(device_name: str) -> str:
    """``NVIDIA A100 80GB PCIe`` → ``a100-pcie``; unknown names ask for ``--gpu``."""
    upper = device_name.upper()
    for words, catalog_name in GPU_NAME_HINTS:
        if all(word in upper for word in words):
            return catalog_name
    raise InputError(f"cannot tell which catalog GPU {device_name!r} is; pass --gpu (see pfplan gpus)", field="gpu")


@dataclass
class Timer:
    """Warm-up, repeats, median and spread; synchronised on CUDA."""

    settings: ComputeSettings
    sync: Callable[[], None] = field(default=lambda: None)

    def samples(self, call: Callable[[], Any]) -> list[float]:
        for _ in range(self.settings.warmup):
            call()
        self.sync()
        start = time.perf_counter()
        call()
        self.sync()
        once = time.perf_counter() - start
        loops = max(1, int(self.settings.min_sample_s / max(once, 1e-7)))
        out = []
        for _ in range(self.settings.repeats):
            start = time.perf_counter()
            for _ in range(loops):
                call()
            self.sync()
            out.append((time.perf_counter() - start) / loops)
        return out


def summarise(samples: list[float], *, query_tokens: int, kv_tokens: int, batch: int,
              tensor_shard: int = 1) -> Timing:
    ordered = sorted(samples)
    deciles = statistics.quantiles(ordered, n=10, method="inclusive") if len(ordered) > 1 else ordered * 9
    return Timing(query_tokens=query_tokens, kv_tokens=kv_tokens, batch=batch, tensor_shard=tensor_shard,
                  median_s=statistics.median(ordered), p10_s=deciles[0], p90_s=deciles[-1],
                  min_s=ordered[0], max_s=ordered[-1], repeats=len(ordered))


def with_ring_in_loop(preset: ModelPreset, entry: RingAttentionTiming, resolution_px: int,
                      settings: ComputeSettings) -> RingAttentionTiming:
    """``entry`` with the core also timed in a loop of its degree's ranks (:mod:`profiler.ring_loop`), its
    excess taken from that."""
    from profiler.ring_loop import time_ring_in_loop

    in_loop = time_ring_in_loop(preset, degree=entry.degree, resolution_px=resolution_px, batch=entry.batch,
                                calls=max(50 * settings.repeats, 200), seed=settings.seed)
    return RingAttentionTiming.model_validate({**entry.model_dump(), "in_loop_s": in_loop,
                                               "in_loop_ranks": entry.degree, "excess_s": in_loop - entry.sdpa_s})


def reduced_preset(preset: ModelPreset) -> ModelPreset:
    """The same model with one block of each kind (for its block-kind list)."""
    from runtime.forward_inputs import single_block_overrides

    data = preset.model_dump()
    data["config"] = {**preset.config, **single_block_overrides(preset)}
    return ModelPreset(**data)


def profile_compute(preset: ModelPreset, settings: ComputeSettings, *, command: str,
                    progress: Callable[[int, str], None] | None = None) -> Profile:
    """Measure ``preset`` (see the module docstring); ``progress(total_or_0, label)`` reports steps."""
    import torch

    from profiler.block_probe import ForwardCapture, stale_kv
    from profiler.tensor_shard import shard_block
    from runtime.families import adapter_for
    from runtime.forward_inputs import forward_inputs, output_module
    from runtime.model_build import build_transformer, transformer_blocks

    device = settings.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but torch sees no CUDA device", field="device")
    if settings.dtype not in DTYPES:
        raise InputError(f"unknown dtype {settings.dtype!r}; choices: {', '.join(DTYPES)}", field="dtype")
    if settings.threads and not device.startswith("cuda"):
        torch.set_num_threads(settings.threads)
    dtype = getattr(torch, DTYPES[settings.dtype])
    catalog_name, device_name = device_identity(device, settings.gpu)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    timer = Timer(settings, sync)

    from profiler.runtime_costs import FullForward, time_scheduler_step, time_vae_decode

    resolutions = settings.resolutions_px or (preset.default_resolution, 2 * preset.default_resolution)
    base_res = preset.default_resolution if preset.default_resolution in resolutions else resolutions[0]
    full = None
    if settings.pass_overhead or (settings.pass_overhead is None and preset.tiny):
        # first, while the process is cold: the runtime's first forward pays the same set-up
        cold_batch = 2 if preset.uses_cfg and 2 in settings.batches else settings.batches[0]
        full = FullForward(preset, resolution_px=base_res, batch=cold_batch, device=device, dtype=dtype,
                           seed=settings.seed, sync=sync)
    small = reduced_preset(preset)
    kinds = small.arch.block_kinds()
    first_of = {kind: kinds.index(kind) for kind in dict.fromkeys(kinds)}
    model = build_transformer(preset, device=device, dtype=None if settings.dtype == "fp32" else dtype,
                              seed=settings.seed,
                              config_overrides=small.config)
    adapter = adapter_for(preset.family)
    blocks = transformer_blocks(model, preset.family)
    if len(blocks) != len(kinds):
        raise RuntimeError(f"built {len(blocks)} blocks, expected {len(kinds)} ({kinds})")
    heads = preset.arch.heads
    tensor_shards = [s for s in settings.tensor_shards if heads % s == 0]
    if not tensor_shards:
        raise InputError(f"no tensor shard in {list(settings.tensor_shards)} divides heads({heads})",
                         field="tensor-shards")
    sharded = {(kind, s): shard_block(blocks[i], s) for kind, i in first_of.items() for s in tensor_shards}

    work = workloads(preset, settings)
    if progress:
        progress(len(work), "")
    layers: dict[str, list[Timing]] = {kind: [] for kind in [EMBED, *first_of, FINAL]}
    with torch.inference_mode():
        for w in work:
            inputs = forward_inputs(preset, rows=w.q_rows, cols=w.cols, batch=w.batch, device=device,
                                    dtype=dtype, seed=settings.seed)
            capture = ForwardCapture(model, blocks, time.perf_counter, sync, output_module(preset, model))
            embed, final = [], []
            try:
                for i in range(settings.warmup + settings.repeats):
                    capture.reset()
                    try:
                        model(**inputs)
                    except RuntimeError:
                        if "end" not in capture.marks:  # only DiT's unpatchify may fail after the end
                            raise
                    if i >= settings.warmup:
                        embed.append(capture.embed_s)
                        final.append(capture.final_s)
            finally:
                capture.remove()
            q = w.query_tokens
            if w.kv_tokens == q:  # embed/final cost does not depend on the keys attended
                layers[EMBED].append(summarise(embed, query_tokens=q, kv_tokens=q, batch=w.batch))
                layers[FINAL].append(summarise(final, query_tokens=q, kv_tokens=q, batch=w.batch))
            extra = w.kv_tokens - q
            for kind, index in first_of.items():
                args, kwargs = capture.calls[index]
                for s in tensor_shards:
                    block = sharded[(kind, s)]
                    with stale_kv([attn for _, attn in adapter.attention_sites(block)], extra):
                        samples = timer.samples(lambda: block(*args, **kwargs))
                    layers[kind].append(summarise(samples, query_tokens=q, kv_tokens=w.kv_tokens,
                                                  batch=w.batch, tensor_shard=s))
            if progress:
                progress(0, f"{w.resolution_px}px q={q} kv={w.kv_tokens} b={w.batch}")
    vae, scheduler, overhead = [], [], []
    with torch.inference_mode():
        if settings.extras:
            vae = time_vae_decode(preset, tuple(resolutions), timer.samples, device=device, dtype=dtype,
                                  seed=settings.seed)
            rows = preset.token_grid(base_res, base_res)[0]
            scheduler = time_scheduler_step(preset, base_res, patch_splits(rows, settings.max_patches), timer.samples,
                                            summarise, device=device, dtype=dtype)
        if full is not None:
            rows = preset.token_grid(full.resolution_px, full.resolution_px)[0]
            overhead = full.overheads(layers, settings.batches, timer.samples, scheduler,
                                      patch_counts=tuple(patch_splits(rows, settings.max_patches)))
    launch, ring = [], []
    if settings.extras:
        from profiler.ring_core import time_ring_core

        with torch.inference_mode():
            ring = time_ring_core(preset, resolution_px=base_res, degrees=tuple(settings.shards),
                                  batches=tuple(settings.batches), samples=timer.samples, device=device, dtype=dtype,
                                  seed=settings.seed)
        if device == "cpu" and settings.corun_ranks >= 2:
            ring = [with_ring_in_loop(preset, entry, base_res, settings) if entry.degree <= settings.corun_ranks
                    else entry for entry in ring]
        if preset.tiny:  # real presets need their weights, which a profile run does not load
            from profiler.runtime_launch import time_runtime_launches

            launch = [time_runtime_launches(preset, resolution_px=base_res, steps=max(preset.default_steps, 2),
                                            launches=LAUNCHES, device=device)]
    corun = []
    if settings.corun_ranks >= 2:
        from profiler.corun import time_corun

        corun = [time_corun(preset, ranks=settings.corun_ranks, resolution_px=base_res,
                            batch=2 if preset.uses_cfg and 2 in settings.batches else settings.batches[0],
                            repeats=max(settings.repeats, 5), seed=settings.seed)]
        if vae:  # data-parallel replicas decode at once
            corun.append(time_corun(preset, ranks=settings.corun_ranks, resolution_px=base_res, batch=1,
                                    repeats=max(settings.repeats, 5), seed=settings.seed, workload="vae_decode"))
    return Profile(model=preset.name, model_family=preset.family, device=catalog_name, device_name=device_name,
                   software=software_stack(device, settings.dtype, settings.threads),
                   text_tokens=preset.text_tokens, layers=layers, vae_decode=vae, scheduler_step=scheduler,
                   pass_overhead=overhead, corun=corun, runtime_launch=launch, ring_attention=ring,
                   provenance=ProfileProvenance(kind="measured", command=command, host=platform.node(),
                                                notes=[f"warmup {settings.warmup}, repeats {settings.repeats}, "
                                                       f"samples of at least {settings.min_sample_s * 1e3:g} ms",
                                                       "patch shapes attend over the whole image's K/V "
                                                       "(stale-K/V attention), text tokens always whole"]))
