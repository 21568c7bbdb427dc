"""The profiled cost model: measured layer times, interpolated, never silently extrapolated.

A profile holds, per layer kind, batch and tensor shard, times at a scatter of
``(query_tokens, kv_tokens)`` shapes: for each measured key/value length ``kv`` (a
"level": the whole image at one resolution, or a local shard) several query lengths. A
shape in between is priced by interpolating in log space:

1. each reading is lowered to the least time measured at as many queries and keys or more;
2. at each level, log time is piecewise linear in log q through those points; above a
   level's largest q it stays at that value;
3. each level's curve is raised to at least the levels below it where they are defined
   (after 1. this only evens out interpolation between levels measured at unlike queries);
4. between two levels, log time is linear in log kv.

The result is non-decreasing in q and in kv (more queries or more keys never cost less).
Readings are lowered, never raised, because load from other work only ever slows a timing:
a shape measured slower than a bigger one is a noisy reading, and the bigger shape's time is
a truer bound on it. (Until 2026-12-03 a running maximum raised the bigger shapes instead: in
the shipped ``pixart-tiny-cpu`` one noisy 32-query block, 1.37 ms against 0.96 ms at 64
queries, raised the 64- and 128-query patches to 1.37 ms too, and PipeFusion with 2, 4 and 8
patches was priced on it.) A shape outside the measured
range (q below the smallest measured query at a bracketing level, kv outside the levels, a
batch or shard never measured) is not guessed at: the model warns, naming the shape, and
answers with the analytic roofline scaled by this profile's measured efficiency (median of
measured / analytic over the kind's rows).

Embed and final are replicated, not split, under tensor parallelism: a tensor shard
never measured for them is priced as the whole layer.

Joint-attention blocks (SD3, Flux: ``BlockKind.joint`` in their family's spec) also run
text tokens through their projections; a shape with ``text_query_tokens`` below the
model's text count is priced as if the missing text tokens were missing image queries.
"""

from __future__ import annotations

import bisect
import importlib.metadata
import math
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from profiles.costs.analytic import AnalyticCostModel, ring_merge_estimate_s
from profiles.costs.cost_model import EMBED, FINAL, LayerShape
from profiles.errors import InputError
from profiles.costs.flops import is_joint
from profiles.catalog.models import ModelPreset
from profiles.costs.profile_format import Profile, Timing, VaeTiming, load_profile, profile_path

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


class ProfileRangeWarning(UserWarning):
    """A shape outside a profile's measured range was priced by the scaled analytic model.

    ``key`` (profile file, layer kind, batch, shard) says which warnings are one: a search's worker
    processes each warn once per key, and the parent reports each key once."""

    def __init__(self, message: str, key: tuple | None = None) -> None:
        super().__init__(message)
        self.key = key


class ProfileStackWarning(UserWarning):
    """A profile was measured under a different software stack than the one installed."""


@dataclass
class Curve:
    """Non-decreasing log-log interpolation of time over query tokens at one kv level."""

    log_q: list[float]
    log_t: list[float]

    @classmethod
    def of(cls, points: list[tuple[int, float]]) -> Curve:
        points = sorted(((q, t) for q, t in points if q > 0), reverse=True)
        log_q, log_t, least = [], [], math.inf
        for q, t in points:  # from the largest q down: the least time at this q or above
            least = min(least, math.log(max(t, 1e-12)))
            if log_q and log_q[-1] == math.log(q):
                log_t[-1] = least
                continue
            log_q.append(math.log(q))
            log_t.append(least)
        return cls(log_q[::-1], log_t[::-1])

    @property
    def q_min(self) -> float:
        return math.exp(self.log_q[0])

    @property
    def q_max(self) -> float:
        return math.exp(self.log_q[-1])

    def __call__(self, q: float) -> float | None:
        """log time at ``q`` (held flat above the largest q); None below the smallest."""
        x = math.log(q)
        if x < self.log_q[0] - 1e-12:
            return None
        if x >= self.log_q[-1]:
            return self.log_t[-1]
        i = bisect.bisect_right(self.log_q, x)
        x0, x1, y0, y1 = self.log_q[i - 1], self.log_q[i], self.log_t[i - 1], self.log_t[i]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


@dataclass
class Surface:
    """Time over (q, kv) for one layer kind, batch and tensor shard."""

    kv_levels: list[int]
    curves: list[Curve]

    @classmethod
    def of(cls, timings: list[Timing], *, ignore_kv: bool = False) -> Surface:
        points = [(t.query_tokens, 0 if ignore_kv else t.kv_tokens, t.median_s) for t in timings]
        by_kv: dict[int, list[tuple[int, float]]] = {}
        for q, kv, _ in points:  # each reading lowered to the least at as many queries and keys or more
            least = min(s for q2, kv2, s in points if q2 >= q and kv2 >= kv)
            by_kv.setdefault(kv, []).append((q, least))
        levels = sorted(by_kv)
        return cls(levels, [Curve.of(by_kv[kv]) for kv in levels])

    def _level(self, j: int, q: float) -> float | None:
        """Level ``j``'s log time at ``q``, raised to every lower level defined there (readings are
        already lowered, so this only evens out interpolation between unlike query grids)."""
        values = [v for v in (c(q) for c in self.curves[: j + 1]) if v is not None]
        own = self.curves[j](q)
        return None if own is None else max(values)

    def log_time(self, q: float, kv: float) -> tuple[float | None, str]:
        """(log seconds, '') inside the measured range, else (None, why not)."""
        if len(self.kv_levels) == 1 and self.kv_levels[0] == 0:
            kv = 0
        if kv < self.kv_levels[0] or kv > self.kv_levels[-1]:
            return None, f"kv_tokens {kv:g} outside measured {self.kv_levels[0]}..{self.kv_levels[-1]}"
        j = bisect.bisect_left(self.kv_levels, kv)
        if self.kv_levels[j] == kv:
            curve = self.curves[j]
            if not curve.q_min <= q <= curve.q_max * (1 + 1e-9):
                where = f" at kv_tokens {kv:g}" if kv else ""
                return None, f"query_tokens {q:g} outside measured {curve.q_min:g}..{curve.q_max:g}{where}"
            return self._level(j, q), ""
        lo, hi = self._level(j - 1, q), self._level(j, q)
        if lo is None or hi is None or q > self.curves[j].q_max * (1 + 1e-9):
            return None, (f"query_tokens {q:g} not measured at both kv {self.kv_levels[j - 1]} and "
                          f"{self.kv_levels[j]}")
        w = (math.log(kv) - math.log(self.kv_levels[j - 1])) / (math.log(self.kv_levels[j]) - math.log(self.kv_levels[j - 1]))
        return (1 - w) * lo + w * max(lo, hi), ""


@dataclass
class ProfiledCostModel:
    """Seconds per layer shape from a profile (see the module docstring)."""

    profile: Profile
    model: ModelPreset
    file: str
    analytic: AnalyticCostModel
    surfaces: dict[tuple[str, int, int], Surface] = field(default_factory=dict)
    efficiency: dict[str, float] = field(default_factory=dict)
    _warned: set[tuple[str, int, int]] = field(default_factory=set)
    _alignment: tuple[object, dict[int, float]] = field(default_factory=lambda: (None, {}))
    """(the profile they belong to, batch → :meth:`forward_alignment`): every layer asks; tests swap the profile."""

    @classmethod
    def from_profile(cls, profile: Profile, model: ModelPreset, *, file: str) -> ProfiledCostModel:
        dtype_bytes = DTYPE_BYTES.get(profile.software.dtype or "", None)
        analytic = AnalyticCostModel.for_gpu(model, profile.device, dtype_bytes=dtype_bytes)
        out = cls(profile, model, file, analytic)
        for kind, timings in profile.layers.items():
            groups: dict[tuple[int, int], list[Timing]] = {}
            for t in timings:
                groups.setdefault((t.batch, t.tensor_shard), []).append(t)
            for (batch, shard), rows in groups.items():
                if any(t.query_tokens > 0 for t in rows):
                    out.surfaces[(kind, batch, shard)] = Surface.of(rows, ignore_kv=kind in (EMBED, FINAL))
            ratios = [t.median_s / a for t in timings if t.query_tokens > 0
                      and (a := analytic.layer_time_s(LayerShape(kind, t.query_tokens, t.kv_tokens, t.batch,
                                                                 t.tensor_shard))) > 0]
            out.efficiency[kind] = statistics.median(ratios) if ratios else 1.0
        return out

    @property
    def name(self) -> str:
        return f"profile:{self.file}"

    def layer_time_s(self, shape: LayerShape) -> float:
        if shape.query_tokens == 0:
            return 0.0
        q = float(shape.query_tokens)
        if shape.text_query_tokens is not None and is_joint(self.model.arch, shape.kind):
            q = max(1.0, q + shape.text_query_tokens - self.model.text_tokens)
        shard = shape.tensor_shard
        if shape.kind in (EMBED, FINAL) and (shape.kind, shape.batch, shard) not in self.surfaces:
            shard = 1  # embeddings and the output layer stay whole (replicated) under tensor parallelism
        surface = self.surfaces.get((shape.kind, shape.batch, shard))
        if surface is None:
            why = f"no timings for {shape.kind} at batch {shape.batch}, tensor_shard {shape.tensor_shard}"
        else:
            value, why = surface.log_time(q, float(shape.kv_tokens))
            if value is not None:
                return math.exp(value) * self.forward_alignment(shape.batch)
        return self._fallback(shape, why) * self.forward_alignment(shape.batch)

    def forward_alignment(self, batch: int) -> float:
        """The layer table brought to the speed of the whole forward timed next to the runtime's loop.

        The (whole-image) entry of ``pass_overhead`` at this batch (else the nearest) holds the warm
        forward (``forward_s``), timed right beside the loop whose excess is ``step_s``, and what the
        layer table prices that forward at (``layers_sum_s`` plus ``block_s`` per block). Layers timed
        one by one, seconds earlier, priced that forward 5 % above to 9 % below it in pixart-tiny's
        profiles on this box (dit-tiny's at batch 1: 13 % above), so a serial step priced from the table
        missed the loop it was measured beside by as much (docs/fidelity.md, round 15). The factor,
        (``forward_s`` − blocks × ``block_s``) ÷ ``layers_sum_s``, makes the priced forward (the scaled
        layers plus the unscaled per-block overhead) equal ``forward_s``: the profile's own two
        measurements, nothing from a run it is checked against; 1 without the entry, and 1 outside
        0.75-1.33 (then something other than drift differs, and the table stands as measured)."""
        if self._alignment[0] is not self.profile:
            self._alignment = (self.profile, {})
        factors = self._alignment[1]
        factor = factors.get(batch)
        if factor is None:
            factor = 1.0
            entries = [e for e in self.profile.pass_overhead if e.forward_s > 0 and e.layers_sum_s > 0]
            if entries:
                entry = min(entries, key=lambda e: (abs(e.batch - batch), e.batch))
                blocks = len(self.model.arch.block_kinds()) * entry.block_s  # charged beside the layers, unscaled
                measured = (entry.forward_s - blocks) / entry.layers_sum_s
                factor = measured if 0.75 <= measured <= 4 / 3 else 1.0
            factors[batch] = factor
        return factor

    # -- optional costs (profiles.costs.cost_model.OPTIONAL_METHODS); None where the profile has no such timings
    def scheduler_step_time_s(self, image_tokens: int) -> float | None:
        """Log-log between measured token counts; outside them, proportional to the tokens
        from the nearest measurement (the step is elementwise over the latent)."""
        points = sorted((t.query_tokens, t.median_s) for t in self.profile.scheduler_step if t.query_tokens > 0)
        if not points or image_tokens <= 0:
            return None
        return _log_log(points, float(image_tokens))

    def pass_overhead_s(self, blocks: int, batch: int) -> float | None:
        """``blocks`` × the measured per-block overhead of a whole forward, plus the runtime loop's
        step overhead, at this batch (else the nearest batch). The step overhead was measured on
        the serial path and is charged to every pass (each PipeFusion patch on each stage)."""
        entries = self.profile.pass_overhead
        if not entries:
            return None
        entry = min(entries, key=lambda e: (abs(e.batch - batch), e.batch))
        return blocks * entry.block_s + (entry.step_s or 0.0)

    def patch_pass_overhead_s(self, blocks: int, batch: int, query_tokens: int) -> float | None:
        """``blocks`` × the per-block overhead of a whole forward, plus what the runtime's PipeFusion loop
        adds around a patch pass, measured at the patch count whose patch is nearest ``query_tokens``
        (in ratio; at this batch, else the nearest batch). None where the profile has no patch loop
        measurement (the simulator then charges :meth:`pass_overhead_s`, the serial loop's step)."""
        entries = [e for e in self.profile.pass_overhead if e.patch_passes]
        if not entries:
            return None
        entry = min(entries, key=lambda e: (abs(e.batch - batch), e.batch))
        near = min(entry.patch_passes, key=lambda p: (abs(math.log(p.query_tokens / max(query_tokens, 1))), p.patches))
        return blocks * entry.block_s + near.pass_s

    def elementwise_time_s(self, nbytes: float, kernels: int) -> float | None:
        """From the measured scheduler steps (the profile's one elementwise measurement): the smallest
        step ÷ its ~12 kernels is one kernel's floor, the largest step's bytes (12 kernels × 3 fp32
        tensors of the latent rows) ÷ its time the achieved rate."""
        points = sorted((t.query_tokens, t.median_s) for t in self.profile.scheduler_step if t.query_tokens > 0)
        if not points:
            return None
        arch = self.model.arch
        kernels_per_step = 12
        floor = points[0][1] / kernels_per_step
        tokens, seconds = points[-1]
        rate = kernels_per_step * 3 * tokens * arch.patch_size ** 2 * arch.latent_channels * 4 / seconds
        return max(kernels * floor, nbytes / rate)

    def ring_attention_excess_s(self, degree: int, batch: int, query_tokens: int, kv_tokens: int,
                                hidden: int) -> float | None:
        """The measured excess of Ring's core over SDPA (:mod:`profiler.ring_core`) at the nearest
        measured degree and batch, in proportion to the attention's FLOPs (``q × kv``) from there,
        and never below minus the SDPA call it replaces; without ring timings, the merges priced as
        elementwise kernels from the scheduler step (None when the profile has neither)."""
        entries = self.profile.ring_attention
        if degree < 2:
            return 0.0
        if entries:
            near = min(entries, key=lambda e: (abs(e.degree - degree), abs(e.batch - batch), e.degree, e.batch))
            scale = (batch * query_tokens * kv_tokens) / (near.batch * near.query_tokens * near.kv_tokens)
            return max(near.excess_s, -near.sdpa_s) * scale
        if self.elementwise_time_s(1.0, 1) is None:
            return None
        return ring_merge_estimate_s(self.elementwise_time_s, hidden, degree, batch, query_tokens)

    def concurrent_slowdown(self, ranks: int, workload: str = "forward") -> float | None:
        """How much slower ``workload`` (``forward`` or ``vae_decode``) runs when ``ranks`` processes of one
        host run it at once: the measured factor at the nearest measured rank count at or below ``ranks``
        (the smallest measured above it, when none is below); the VAE takes the forward's factor where
        the profile did not time its own; None when the profile measured none."""
        entries = sorted((e for e in self.profile.corun if e.workload == workload), key=lambda e: e.ranks)
        if not entries and workload != "forward":
            return self.concurrent_slowdown(ranks)
        if ranks < 2 or not entries:
            return None
        below = [e for e in entries if e.ranks <= ranks]
        return max((below or entries[:1])[-1].slowdown, 1.0)

    def first_pass_overhead_s(self, batch: int) -> float | None:
        """The cold first forward's extra time: from the runtime's own launches where the profile
        has them (what a fresh pfrun rank pays), else the profiler's cold forward."""
        if self.profile.runtime_launch:
            return max(e.first_step_extra_s for e in self.profile.runtime_launch)
        entries = self.profile.pass_overhead
        return max(e.first_pass_s for e in entries) if entries else None

    def image_setup_time_s(self) -> float | None:
        """A rank's set-up of its image before the first step (conditioning inputs, the latent
        draw), as the runtime's own launches measured it: the time from the start barrier to the
        first span (2.4-2.6 ms for pixart-tiny on this CPU, 2026-12-04); None where the profile's
        launches did not record it."""
        setups = [e.setup_s for e in self.profile.runtime_launch if e.setup_s is not None]
        return max(setups) if setups else None

    def vae_decode_time_s(self, height_px: int, width_px: int) -> float | None:
        """The measured decode at this resolution, other sizes proportional to the pixels from the
        nearest measured one. Which figure: where the runtime's launches ran each in a fresh process
        (``fresh_process``), what a fresh pfrun rank's one decode took there, carried to other
        resolutions by the profiler's warm medians (launch decode / warm median at the launch's
        resolution, × the warm median nearest this one): the decode of a new process pays first-touch
        set-up that neither the warm median (pixart-tiny 256 px: 91 ms) nor the profiler's cold call
        after its other timings (159 ms) measures (fresh ranks: 92-141 ms, 2026-12-02). Older
        profiles' launches ran warm in the profiler's process and only decide between the cold first
        call (what a one-image run pays) and the warm median, as before."""
        entries = self.profile.vae_decode
        if not entries:
            return None
        pixels = height_px * width_px

        def nearest(px: int) -> VaeTiming:
            return min(entries, key=lambda e: (abs(math.log(e.height_px * e.width_px / px)), e.height_px))

        near = nearest(pixels)
        fresh = [e for e in self.profile.runtime_launch if e.fresh_process and e.vae_decode_s is not None]
        if fresh:
            launch = fresh[0]
            at_launch = nearest(launch.height_px * launch.width_px)
            ratio = launch.vae_decode_s / at_launch.median_s * (
                at_launch.height_px * at_launch.width_px / (launch.height_px * launch.width_px))
            return near.median_s * ratio * pixels / (near.height_px * near.width_px)
        warm_in_runs = any(e.vae_decode_s is not None and near.first_s is not None and e.vae_decode_s < near.first_s
                           for e in self.profile.runtime_launch)
        seconds = near.first_s if near.first_s is not None and not warm_in_runs else near.median_s
        return seconds * pixels / (near.height_px * near.width_px)

    def _fallback(self, shape: LayerShape, why: str) -> float:
        scale = self.efficiency.get(shape.kind, 1.0)
        key = (shape.kind, shape.batch, shape.tensor_shard)
        if key not in self._warned:  # once per kind, batch and shard: a search asks for hundreds of shapes
            self._warned.add(key)
            label = (f"{shape.kind} (query_tokens={shape.query_tokens}, kv_tokens={shape.kv_tokens}, "
                     f"batch={shape.batch}, tensor_shard={shape.tensor_shard})")
            warnings.warn(ProfileRangeWarning(
                f"{self.file}: {label} is outside the measured range ({why}); using the analytic "
                f"model × {scale:.3g} (this profile's measured efficiency); other {shape.kind} shapes of this batch "
                f"and shard outside the range are treated the same and not reported", key=(self.file, *key)),
                stacklevel=3)
        return scale * self.analytic.layer_time_s(shape)


def _log_log(points: list[tuple[int, float]], x: float) -> float:
    """Piecewise log-log interpolation of (x, seconds) points; proportional to x outside them."""
    if x <= points[0][0]:
        return points[0][1] * x / points[0][0]
    if x >= points[-1][0]:
        return points[-1][1] * x / points[-1][0]
    i = bisect.bisect_right([p[0] for p in points], x)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    if y0 <= 0 or y1 <= 0:
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    w = math.log(x / x0) / math.log(x1 / x0)
    return math.exp((1 - w) * math.log(y0) + w * math.log(y1))


def _major_minor(version: str | None) -> str | None:
    return None if version is None else ".".join(version.split("+")[0].split(".")[:2])


def installed_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_compatible(profile: Profile, model: ModelPreset, *, file: str, gpu_name: str | None = None,
                     dtype: str | None = None) -> None:
    """Refuse a profile of another model, device or dtype; warn, by field name, about a changed stack."""
    if profile.model is None or not profile.layers:
        raise InputError("a links-only profile has no layer timings; give a compute profile", file=file,
                         field="layers")
    if profile.model != model.name:
        raise InputError(f"profile of model {profile.model!r}, not {model.name!r}", file=file, field="model")
    missing = [k for k in dict.fromkeys([EMBED, *model.arch.block_kinds(), FINAL]) if k not in profile.layers]
    if missing:
        raise InputError(f"no timings for layer kinds {', '.join(missing)}", file=file, field="layers")
    if gpu_name is not None and gpu_name != profile.device:
        raise InputError(f"profile measured on {profile.device!r}, but the plan runs on {gpu_name!r}", file=file,
                         field="device")
    if dtype is not None and profile.software.dtype is not None and dtype != profile.software.dtype:
        raise InputError(f"profile measured in {profile.software.dtype}, but {dtype} was asked for", file=file,
                         field="software.dtype")
    for package in ("torch", "diffusers"):
        recorded = getattr(profile.software, package)
        here = installed_version(package)
        if recorded and here and _major_minor(recorded) != _major_minor(here):
            warnings.warn(f"{file}: software.{package} is {recorded} in the profile but {here} is installed; "
                          f"timings may have drifted", ProfileStackWarning, stacklevel=3)


def load_profiled_cost_model(path_or_name: str | Path, model: ModelPreset, gpu_name: str | None = None, *,
                             dtype: str | None = None) -> ProfiledCostModel:
    """The cost model of a profile file or shipped profile name, checked against ``model``."""
    path = profile_path(path_or_name)
    profile = load_profile(path)
    check_compatible(profile, model, file=str(path), gpu_name=gpu_name, dtype=dtype)
    return ProfiledCostModel.from_profile(profile, model, file=Path(path).name if Path(path).parent.name == "profiles"
                                          else str(path))
