"""One plan's simulation as the search reads it: the prediction, or why the run does not fit.

Why its own module: the search (:mod:`planner.search`), its workers (:mod:`planner.simulate_chosen`)
and ``pfplan plan`` all ask the simulator the same question and word a plan that does not fit alike.
"""

from __future__ import annotations

from profiles.costs.cost_model import CostModel
from profiles.catalog.models import ModelPreset
from profiles.topology.graph import ClusterGraph
from simulator.plan import ParallelPlan, Prediction

GB = 1e9


def does_not_fit(peak: int, capacity: int, device: str) -> str:
    return f"does not fit: {peak / GB:.1f} GB > {capacity / GB:.1f} GB on {device}"


def simulate_prediction(plan: ParallelPlan, model: ModelPreset, cluster: ClusterGraph,
                        cost_model: CostModel, dtype_bytes: int, *,
                        stop_after_s: float | None = None) -> tuple[Prediction | None, str | None]:
    """The simulator's prediction, or why the simulated run does not fit.

    ``stop_after_s``: raises :class:`~simulator.deadline.SlowerThan` once the run cannot end before it
    (its clock, or the work a stage group has left, passes it), unless the plan does not fit (memory
    does not depend on the run: that answer is the full run's).
    """
    from simulator.deadline import SlowerThan
    from simulator.engine import simulate

    try:
        result = simulate(plan, model, cluster, cost_model, dtype_bytes=dtype_bytes, stop_after_s=stop_after_s)
    except SlowerThan:
        from simulator.memory import capacity_bytes, memory_per_device, oom_messages

        memory = memory_per_device(plan, model, cluster, dtype_bytes=dtype_bytes)
        if not oom_messages(memory, cluster):
            raise
        return None, _oom_reason({d: m.total for d, m in memory.items()},
                                 {d: capacity_bytes(cluster, d) for d in memory})
    if not result.fits:
        return None, _oom_reason(result.prediction.peak_memory_bytes, result.prediction.memory_capacity_bytes)
    return result.prediction, None


def _oom_reason(peaks: dict[str, int], capacities: dict[str, int]) -> str:
    """The rejection of a simulated run that does not fit, naming its fullest device."""
    worst = max(peaks, key=peaks.get, default=None)  # type: ignore[arg-type]
    if worst is None:
        return "does not fit (simulated run ran out of memory)"
    return does_not_fit(peaks[worst], capacities.get(worst, 0), worst)
