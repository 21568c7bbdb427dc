"""The GPU catalog: data-sheet peak compute, memory and memory bandwidth per device kind.

These figures seed the analytic (roofline) cost model and the memory check. They are
data-sheet numbers, and each entry says where it came from.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from profiles.formats import FormatModel
from pydantic import ConfigDict, Field

from profiles.errors import InputError
from profiles.loading import load_model_file, suggest

GPUS_FILE = Path(__file__).parents[1] / "data" / "gpus.yaml"


class GpuSpec(FormatModel):
    """One device kind as its data sheet describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    peak_tflops: float = Field(gt=0, description="Dense bf16/fp16 tensor throughput, TFLOP/s (fp32 for cpu).")
    memory_gb: float = Field(gt=0, description="Device memory, GB (10^9 bytes).")
    memory_bandwidth_gb_s: float = Field(gt=0, description="Device memory bandwidth, GB/s.")
    interconnect: str = ""
    source: str = Field(description="Where these figures come from.")

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * 1e9)


class GpuCatalog(FormatModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    gpus: dict[str, GpuSpec]


@lru_cache(maxsize=1)
def catalog() -> GpuCatalog:
    return load_model_file(GpuCatalog, GPUS_FILE)


def gpu_names() -> list[str]:
    return sorted(catalog().gpus)


def get_gpu(name: str) -> GpuSpec:
    """The spec of GPU kind ``name``; unknown names get the closest suggestion."""
    gpus = catalog().gpus
    if name not in gpus:
        raise InputError(f"unknown GPU {name!r}; {suggest(name, list(gpus))}", field="gpu")
    return gpus[name]
