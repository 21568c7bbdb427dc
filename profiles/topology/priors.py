"""Communication priors for a box nobody calibrated, per NCCL route class, from public NCCL runs.

A topology's link figures say what the wires carry; NCCL reaches less, and an "asynchronous"
collective beside busy kernels hides only part of its time. Without a calibration
(``pfplan topology calibrate``) or measured links (``pfplan profile links``) the simulator
used to assume the ideal (1.0, 1.0), which made every imported or data-sheet box look
perfect. These priors replace that. The achieved-bandwidth figures are busBW reported by
``nccl-tests`` on public boxes ÷ the link figure our topologies use for that class
(docs/references.md §4); each carries its source. The overlap figures are weaker: no public
NCCL measurement of how much of a collective hides beside compute was found, so they are
stated judgements (NCCL's copy kernels take SMs and memory bandwidth from the compute they
overlap; PCIe transfers go through host bridges and stall more), to be replaced by
``pfplan profile overlap`` on the box. A topology that uses them says ``prior: true``.
"""

from __future__ import annotations

from dataclasses import dataclass

from profiles.topology.format import Communication

PRIOR_SOURCE = "priors from public NCCL measurements per route class (profiles/topology/priors.py), not measured here"


@dataclass(frozen=True)
class Prior:
    bandwidth_efficiency: float
    bandwidth_source: str
    overlap_efficiency: float
    overlap_source: str


_OVERLAP_JUDGEMENT = "judgement: no public NCCL overlap measurement found; run `pfplan profile overlap`"

PRIORS: dict[str, Prior] = {
    "NVL": Prior(0.67, "nccl-tests all_reduce_perf on 8×A100 SXM NVSwitch: busBW ≈ 200–208 GB/s of NVLink3's "
                       "300 GB/s per direction (github.com/NVIDIA/nccl-tests/issues/149, /issues/178)",
                 0.7, _OVERLAP_JUDGEMENT),
    "PIX": Prior(0.70, "nccl-tests all_reduce_perf on 4 PCIe Gen5 GPUs (RTX 5090) behind switches: busBW 35 GB/s of "
                       "≈ 50 GB/s usable x16 (github.com/NVIDIA/nccl/issues/1639)",
                 0.3, _OVERLAP_JUDGEMENT),
    "PXB": Prior(0.56, "same thread, 8 GPUs across two switch chips: busBW 28 GB/s of ≈ 50 GB/s "
                       "(github.com/NVIDIA/nccl/issues/1639)",
                 0.3, _OVERLAP_JUDGEMENT),
    "PHB": Prior(0.56, "as PXB: traffic through the host bridge is bounded by the CPU and memory, NCCL's maintainer "
                       "notes (github.com/NVIDIA/nccl/issues/1639)",
                 0.3, _OVERLAP_JUDGEMENT),
    "SYS": Prior(0.42, "NCCL's own topology model rates a SYS path at 10 GB/s against 24 GB/s for the PCIe path on "
                       "an RTX 4090 node (NCCL_DEBUG topology dump, github.com/NVIDIA/nccl-tests/issues/307)",
                 0.3, _OVERLAP_JUDGEMENT),
    "NET": Prior(0.85, "nccl-tests all_reduce_perf across 3 nodes of 8×A100 with 4×HDR InfiniBand: 84.8 GB/s average "
                       "of 100 GB/s (github.com/NVIDIA/nccl-tests/issues/119)",
                 0.5, _OVERLAP_JUDGEMENT),
}


def is_calibrated(comm: Communication) -> bool:
    """True when the figures were set by someone (a calibration, a measurement, a borrowed value)."""
    return not comm.prior and bool(comm.source or comm.bandwidth_efficiency != 1 or comm.overlap_efficiency != 1
                                   or comm.bandwidth_by_route_class)


def prior_communication(route_classes: set[str] | list[str]) -> Communication:
    """The prior figures for a box whose GPU pairs use ``route_classes``.

    Bandwidth is per class; overlap is one figure per topology in the simulator, so it is the
    prior of the farthest class present (the one the parallel groups that cross it will see).
    """
    from profiles.topology.graph import ROUTE_CLASSES

    present = [c for c in ROUTE_CLASSES if c in set(route_classes)] or ["PIX"]
    far = present[-1]
    sources = "; ".join(f"{c} {PRIORS[c].bandwidth_efficiency:g}: {PRIORS[c].bandwidth_source}" for c in present)
    return Communication(bandwidth_efficiency=PRIORS[far].bandwidth_efficiency,
                         overlap_efficiency=PRIORS[far].overlap_efficiency,
                         bandwidth_by_route_class={c: PRIORS[c].bandwidth_efficiency for c in present},
                         prior=True,
                         source=f"{PRIOR_SOURCE}. Bandwidth: {sources}. Overlap {PRIORS[far].overlap_efficiency:g} "
                                f"({far}): {PRIORS[far].overlap_source}.")
