"""Choose the cost model for a run: a profile when given, else the GPU's data-sheet roofline."""

from __future__ import annotations

from pathlib import Path

from profiles.costs.analytic import AnalyticCostModel
from profiles.costs.cost_model import CostModel
from profiles.catalog.models import ModelPreset


def cost_model_for(model: ModelPreset, gpu_name: str, profile: str | Path | None = None) -> CostModel:
    """The profiled cost model of ``profile`` (a path or shipped name), or the analytic one for ``gpu_name``."""
    if profile is None:
        return AnalyticCostModel.for_gpu(model, gpu_name)
    from profiles.costs.profiled import load_profiled_cost_model  # provided by the profiler

    return load_profiled_cost_model(profile, model, gpu_name=gpu_name)


def dtype_bytes_of(cost_model: CostModel, default: int = 2) -> int:
    """Bytes per element the costs were made for (fp32 on CPU: 4; bf16/fp16: 2).

    Memory and traffic must be priced in the dtype the compute times assume, so the search
    and ``pfplan simulate`` take it from the cost model, never from a guess of their own.
    """
    for holder in (cost_model, getattr(cost_model, "analytic", None)):
        value = getattr(holder, "dtype_bytes", None)
        if isinstance(value, int) and value > 0:
            return value
    return default
