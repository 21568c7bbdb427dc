"""Profiles that are derived rather than measured: analytic ones, and calibrated ones.

``pfplan profile analytic`` writes the roofline of :mod:`profiles.costs.analytic` (data-sheet
FLOP/s and memory bandwidth, an efficiency curve that falls for small problems) at the
same shapes the compute profiler measures, so a plan can be priced for a GPU nobody has
profiled yet; its provenance says ``analytic`` and records the efficiency constants.

``pfplan profile calibrate`` scales a profile so that its serial prediction — embed, every
block and final at the whole image, times the steps, batch 2 under classifier-free
guidance — equals one measured serial run, and records the factor, the measurement and
the command. :func:`serial_prediction_s` is that sum; the tests use the same function.
"""

from __future__ import annotations

from dataclasses import asdict

from profiles.costs.analytic import AnalyticCostModel, Efficiency
from profiles.costs.cost_model import EMBED, FINAL, CostModel, LayerShape
from profiles.catalog.models import ModelPreset
from profiles.costs.profile_format import Calibration, Profile, ProfileProvenance, SoftwareStack, Timing, utc_now


def serial_layers(model: ModelPreset) -> list[str]:
    """Layer kinds of one serial forward, in order: embed, every block, final."""
    return [EMBED, *model.arch.block_kinds(), FINAL]


def serial_prediction_s(cost: CostModel, model: ModelPreset, *, resolution_px: int, steps: int,
                        batch: int | None = None) -> float:
    """Seconds of ``steps`` serial forwards of the whole image (batch 2 under CFG by default)."""
    tokens = model.image_tokens(resolution_px)
    batch = batch or (2 if model.uses_cfg else 1)
    per_step = sum(cost.layer_time_s(LayerShape(kind, tokens, tokens, batch)) for kind in serial_layers(model))
    return steps * per_step


def analytic_profile(model: ModelPreset, gpu_name: str, *, resolutions_px: tuple[int, ...] = (),
                     max_patches: int = 32, dtype: str = "bf16", command: str,
                     efficiency: Efficiency | None = None) -> Profile:
    """The roofline's times at the shapes the compute profiler would measure."""
    from profiles.catalog.gpus import get_gpu
    from profiles.costs.workloads import ComputeSettings, workloads

    dtype_bytes = 4 if dtype == "fp32" else 2
    cost = AnalyticCostModel.for_gpu(model, gpu_name, dtype_bytes=dtype_bytes, efficiency=efficiency)
    if not resolutions_px:
        base = model.default_resolution
        resolutions_px = tuple(r for r in (base // 2, base, 2 * base) if r % (model.vae_scale_factor * model.arch.patch_size) == 0)
    settings = ComputeSettings(resolutions_px=resolutions_px, max_patches=max_patches)
    shards = [s for s in (1, 2, 4, 8) if model.arch.heads % s == 0]
    layers: dict[str, list[Timing]] = {kind: [] for kind in dict.fromkeys(serial_layers(model))}
    for w in workloads(model, settings):
        q = w.query_tokens
        for kind in layers:
            if kind in (EMBED, FINAL):
                if w.kv_tokens == q:
                    t = cost.layer_time_s(LayerShape(kind, q, q, w.batch))
                    layers[kind].append(_exact(q, q, w.batch, 1, t))
                continue
            for s in shards:
                t = cost.layer_time_s(LayerShape(kind, q, w.kv_tokens, w.batch, s))
                layers[kind].append(_exact(q, w.kv_tokens, w.batch, s, t))
    spec = get_gpu(gpu_name)
    return Profile(model=model.name, model_family=model.family, device=gpu_name, device_name=spec.description,
                   software=SoftwareStack(dtype=dtype), text_tokens=model.text_tokens, layers=layers,
                   provenance=ProfileProvenance(kind="analytic", command=command,
                                                analytic={k: float(v) for k, v in asdict(cost.efficiency).items()},
                                                notes=[f"roofline from the data sheet: {spec.peak_tflops:g} TFLOP/s, "
                                                       f"{spec.memory_bandwidth_gb_s:g} GB/s ({spec.source})"]))


def _exact(q: int, kv: int, batch: int, shard: int, seconds: float) -> Timing:
    return Timing(query_tokens=q, kv_tokens=kv, batch=batch, tensor_shard=shard, median_s=seconds, p10_s=seconds,
                  p90_s=seconds, min_s=seconds, max_s=seconds, repeats=1)


def calibrate(profile: Profile, model: ModelPreset, *, file: str, resolution_px: int, steps: int,
              measured_serial_s: float, command: str, source: str = "") -> Profile:
    """``profile`` with every time scaled so its serial prediction equals ``measured_serial_s``."""
    from profiles.errors import InputError
    from profiles.costs.profiled import ProfiledCostModel, check_compatible

    if measured_serial_s <= 0:
        raise InputError(f"must be positive, got {measured_serial_s}", field="measured-serial")
    check_compatible(profile, model, file=file)
    cost = ProfiledCostModel.from_profile(profile, model, file=file)
    batch = 2 if model.uses_cfg else 1
    predicted = serial_prediction_s(cost, model, resolution_px=resolution_px, steps=steps, batch=batch)
    factor = measured_serial_s / predicted
    scaled = {kind: [t.model_copy(update={name: getattr(t, name) * factor
                                          for name in ("median_s", "p10_s", "p90_s", "min_s", "max_s")})
                     for t in timings] for kind, timings in profile.layers.items()}
    record = Calibration(factor=factor, measured_serial_s=measured_serial_s, predicted_serial_s=predicted,
                         resolution_px=resolution_px, steps=steps, batch=batch,
                         previous_kind=profile.provenance.kind, source=source, command=command,
                         created_at=utc_now())
    provenance = profile.provenance.model_copy(update={
        "kind": "calibrated", "calibration": record,
        "notes": [*profile.provenance.notes,
                  f"calibrated ×{factor:.4g}: predicted {predicted:.4g} s, measured {measured_serial_s:.4g} s "
                  f"({model.name} {resolution_px}px, {steps} steps, batch {batch})"]})
    return profile.model_copy(update={"layers": scaled, "provenance": provenance})
