"""The published peak-memory rows (docs/references.md §7) and the configuration they ran in.

The xDiT paper's figure, 8 GPUs. How those runs were set up is read from xDiT's examples, not
fitted: each process moves the whole pipeline to its GPU in the model's dtype (fp16 PixArt and
SD3, bf16 Flux; ``examples/*_example.py``), the last rank prints
``torch.cuda.max_memory_allocated() / 1e9`` (GB, without CUDA context or allocator slack),
and ``examples/run.sh`` says speed runs use ``--output_type latent`` (no VAE decode) — which
the rows agree with: 1024 → 2048 px adds ≈ 1 GB, where a full decode would add ≈ 5 GB.

PipeFusion's stages hold the blocks xDiT's own split gives them when no ``--attn_layer_num_for_pp``
is passed (:func:`planner.xdit.xdit_stage_split`: ceil(L/N) blocks per stage, so Flux's printing
last rank holds one single-stream block of 57, not a balanced seventh). Where that rule leaves the
last stage empty (PixArt-α's 28 blocks on 8 stages: [4]*7 + [0]), which a plan cannot hold, the
nearest plan that can is used: one block moved onto the last stage ([4]*6 + [3, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.catalog.models import load_model
from simulator.memory import MemoryBreakdown, MemoryOptions, memory_per_rank
from planner.xdit import xdit_stage_split
from simulator.plan import ParallelPlan, plan_from_spec

SOURCE = "xDiT paper, peak-memory figure (docs/references.md §7)"
AS_PUBLISHED = MemoryOptions(text_encoders="gpu", vae_decode="none")
"""What each published process held (see the module docstring); the overhead terms do not enter
``allocated``, the figure compared."""


@dataclass(frozen=True)
class PeakRow:
    model: str
    resolution: int
    method: str
    spec: str
    published_gb: float


SPEC = {"1 GPU": "", "sequence parallel": "ulysses=8", "PipeFusion": "pipefusion=8,patches=8,warmup=1",
        "cfg × pf": "cfg=2,pipefusion=4,patches=4,warmup=1", "pf × cfg": "cfg=2,pipefusion=4,patches=4,warmup=1",
        "tensor parallel": "tensor=8", "DistriFusion": "distrifusion=8,warmup=1"}

_TABLE = {
    ("pixart-alpha", 1024): {"1 GPU": 13.10, "sequence parallel": 12.99, "PipeFusion": 13.00, "cfg × pf": 12.32,
                             "tensor parallel": 12.30, "DistriFusion": 15.28},
    ("sd3-medium", 1024): {"1 GPU": 17.93, "sequence parallel": 17.67, "PipeFusion": 14.49, "pf × cfg": 14.85},
    ("sd3-medium", 2048): {"1 GPU": 18.92, "sequence parallel": 17.87, "PipeFusion": 16.00, "pf × cfg": 15.88},
    ("flux-dev", 1024): {"1 GPU": 34.21, "sequence parallel": 33.86, "PipeFusion": 10.89},
    ("flux-dev", 2048): {"1 GPU": 35.43, "sequence parallel": 34.07, "PipeFusion": 12.34},
}
ROWS: tuple[PeakRow, ...] = tuple(PeakRow(m, r, method, SPEC[method], gb)
                                  for (m, r), methods in _TABLE.items() for method, gb in methods.items())


def xdit_split(layers: int, stages: int) -> list[int]:
    """xDiT's default split, with an empty last stage given one block from the stage before it."""
    split = xdit_stage_split(layers, stages)
    while 0 in split:
        empty = split.index(0)
        split[empty - 1] -= 1
        split[empty] = 1
    return split


def published_plan(row: PeakRow) -> ParallelPlan:
    """The row's run as a plan: its degrees, and xDiT's stage split where it pipelines."""
    model = load_model(row.model)
    plan = plan_from_spec(row.model, row.spec, height_px=row.resolution, width_px=row.resolution, steps=20)
    stages = plan.degrees.pipeline_stages
    if stages > 1:
        plan = plan.model_copy(update={"stage_split": xdit_split(model.layers, stages)})
    return plan


def predicted(row: PeakRow, options: MemoryOptions = AS_PUBLISHED) -> MemoryBreakdown:
    """The printing (last) rank's predicted breakdown for the row's run."""
    return memory_per_rank(published_plan(row), load_model(row.model), options=options)[-1]


def error_pct(row: PeakRow, options: MemoryOptions = AS_PUBLISHED) -> float:
    return 100.0 * (predicted(row, options).allocated / 1e9 / row.published_gb - 1.0)
