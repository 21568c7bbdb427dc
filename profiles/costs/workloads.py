"""Which forwards a compute profile times: the settings of a profiling run and its shape list.

Torch-free, so the analytic profile writer (:mod:`profiles.costs.profile_derive`) lists the
same shapes the profiler (:mod:`profiler.compute`) measures, and the two kinds of profile
have the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.catalog.models import ModelPreset


@dataclass(frozen=True)
class ComputeSettings:
    """What to measure and how often."""

    device: str = "cpu"
    dtype: str = "fp32"
    resolutions_px: tuple[int, ...] = ()
    """Image sizes (square); empty: the preset's default resolution and twice it."""
    max_patches: int = 32
    batches: tuple[int, ...] = (1, 2)
    shards: tuple[int, ...] = (2, 4)
    """Local sequence shards q = kv = S/N."""
    tensor_shards: tuple[int, ...] = (1, 2, 4)
    """Kept where they divide the head count."""
    threads: int | None = 1
    warmup: int = 2
    repeats: int = 7
    min_sample_s: float = 0.002
    """Fast calls are looped until one sample lasts this long (timer resolution, overheads)."""
    seed: int = 0
    gpu: str | None = None
    """Catalog GPU name (default: guessed from the CUDA device name; 'cpu' on CPU)."""
    extras: bool = True
    """Also time the VAE decode and the scheduler step (:mod:`profiler.runtime_costs`)."""
    pass_overhead: bool | None = None
    """Build the whole model to measure the pass overhead; None: for tiny presets only."""
    corun_ranks: int = 0
    """Also time the whole forward on this many CPU processes at once (0: not; :mod:`profiler.corun`), and, with
    ``extras``, Ring's core in a loop of ``degree`` ranks for every timed Ring degree up to it (:mod:`profiler.ring_loop`)."""


@dataclass(frozen=True)
class Workload:
    """One forward of the reduced model: queries on a ``q_rows × cols`` grid, ``kv`` keys."""

    resolution_px: int
    q_rows: int
    cols: int
    kv_tokens: int
    batch: int

    @property
    def query_tokens(self) -> int:
        return self.q_rows * self.cols


def workloads(preset: ModelPreset, settings: ComputeSettings) -> list[Workload]:
    """Every forward the profile needs, smallest first (see the module docstring).

    Each key/value length measured (the whole image, and each local shard of ``rows/N``
    rows) gets the full column of patch splits, so the profiled cost model can interpolate
    between any two of them. Example: pixart-tiny at 256 px (16 × 16 tokens), max 4
    patches, shards 2 and 4 → kv 256 with q 256, 128, 64; kv 128 with q 128, 64, 32;
    kv 64 with q 64, 32, 16.
    """
    out: dict[tuple[int, int, int], Workload] = {}
    resolutions = settings.resolutions_px or (preset.default_resolution, 2 * preset.default_resolution)
    for res in resolutions:
        rows, cols = preset.token_grid(res, res)
        grids = [rows] + [rows // n for n in settings.shards if rows % n == 0 and n > 1]
        for batch in settings.batches:
            for grid_rows in grids:
                for m in patch_splits(grid_rows, settings.max_patches):
                    _add(out, Workload(res, grid_rows // m, cols, grid_rows * cols, batch))
    return sorted(out.values(), key=lambda w: (w.batch, w.kv_tokens, w.query_tokens))


def patch_splits(rows: int, max_patches: int) -> list[int]:
    """Power-of-two patch counts that cut ``rows`` token rows evenly (1 = the whole grid)."""
    return [m for m in range(1, min(rows, max_patches) + 1) if rows % m == 0 and m & (m - 1) == 0]


def _add(out: dict[tuple[int, int, int], Workload], w: Workload) -> None:
    """Keep the first workload of each (query, kv, batch) key: a profile's rows are unique."""
    out.setdefault((w.query_tokens, w.kv_tokens, w.batch), w)
