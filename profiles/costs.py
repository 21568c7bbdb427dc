"""Choose the cost model for a run: a profile when given, else the GPU's data-sheet roofline."""

from __future__ import annotations

from pathlib import Path

from profiles.analytic import AnalyticCostModel
from profiles.cost_model import CostModel
from profiles.models import ModelPreset


def cost_model_for(model: ModelPreset, gpu_name: str, profile: str | Path | None = None) -> CostModel:
    """The profiled cost model of ``profile`` (a path or shipped name), or the analytic one for ``gpu_name``."""
    if profile is None:
        return AnalyticCostModel.for_gpu(model, gpu_name)
    from profiles.profiled import load_profiled_cost_model  # provided by the profiler

    return load_profiled_cost_model(profile, model, gpu_name=gpu_name)
