"""Before any rank starts: the plan's devices exist here, and its predicted memory fits.

A plan searched for eight L40s, started with ``--device auto`` on a laptop, used to start
eight CPU processes of the full model and say nothing for minutes. :func:`check_devices`
refuses that in one line saying what the plan wants and what this machine has (count,
kind, memory), unless the user asks for CPU emulation (``--emulate-on-cpu``);
:func:`check_memory` compares the simulator's predicted peak per device
(:func:`simulator.memory.memory_per_device`) with the free memory of the device each rank
will use (``torch.cuda.mem_get_info``; on CPU all ranks share the host's available RAM)
and refuses with the figures unless ``--force``. Both raise :class:`PreflightRefusal`
(exit 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from profiles.catalog.models import ModelPreset
from runtime.errors import UnrunnablePlan
from simulator.plan import ParallelPlan

CPU_KIND = "cpu"
"""The topology device kind of a CPU process (profiles/data/gpus.yaml)."""

GB = 1e9


class PreflightRefusal(UnrunnablePlan):
    """The plan cannot start on this machine as asked: exit 2, one line with the figures."""


@dataclass(frozen=True)
class Machine:
    """What this machine offers a run: visible CUDA devices (name, total and free bytes) and host RAM."""

    gpus: tuple[tuple[str, int, int], ...]
    cpu_cores: int
    available_ram: int

    def describe(self) -> str:
        if not self.gpus:
            return f"no CUDA GPU (found {self.cpu_cores} CPU cores, {self.available_ram / GB:.1f} GB RAM available)"
        names = sorted({name for name, _, _ in self.gpus})
        return f"{len(self.gpus)} CUDA GPU{'s' if len(self.gpus) > 1 else ''} ({', '.join(names)})"


def this_machine() -> Machine:
    """Probe CUDA (if torch sees it) and the host's available memory."""
    import torch

    gpus: list[tuple[str, int, int]] = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            gpus.append((torch.cuda.get_device_name(i), int(total), int(free)))
    return Machine(gpus=tuple(gpus), cpu_cores=os.cpu_count() or 1, available_ram=available_ram())


def available_ram() -> int:
    """MemAvailable from /proc/meminfo (bytes); physical pages × size where there is none."""
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def plan_device_kinds(plan: ParallelPlan, cluster: Any) -> list[str]:
    """The device kind (gpus.yaml name) of each rank's device; ``cpu`` everywhere without a topology."""
    if cluster is None:
        return [CPU_KIND] * plan.world_size
    return [cluster.gpu_of(d) for d in plan.devices(cluster)]


def check_devices(plan: ParallelPlan, cluster: Any, machine: Machine, *, device: str, emulate_on_cpu: bool,
                  force: bool) -> str:
    """The device (``cpu`` or ``cuda``) the run uses; refuses a GPU plan without GPUs, too few GPUs, or
    GPUs of another kind (``--force`` accepts another kind)."""
    kinds = plan_device_kinds(plan, cluster)
    wants_gpu = [k for k in kinds if k != CPU_KIND]
    where = f" ({plan.topology})" if plan.topology else ""
    if device == "cpu" and wants_gpu and not emulate_on_cpu:
        raise PreflightRefusal(f"the plan is for {len(kinds)} × {wants_gpu[0]}{where} and --device cpu was asked "
                               f"for; pass --emulate-on-cpu to run its {plan.world_size} ranks as CPU processes")
    if device in ("auto", "cuda") and wants_gpu and not machine.gpus:
        if not emulate_on_cpu:
            raise PreflightRefusal(f"the plan is for {len(kinds)} × {wants_gpu[0]}{where}, this machine has "
                                   f"{machine.describe()}; pass --emulate-on-cpu to run its {plan.world_size} "
                                   f"ranks as CPU processes")
        return "cpu"
    if device == "cuda" and not machine.gpus:
        raise PreflightRefusal(f"--device cuda asked for, but torch sees no CUDA device ({machine.cpu_cores} CPU "
                               f"cores, {machine.available_ram / GB:.1f} GB RAM available); use --device cpu")
    if emulate_on_cpu:
        return "cpu"
    use = "cuda" if device == "cuda" or (device == "auto" and machine.gpus) else "cpu"
    if use == "cuda":
        if len(machine.gpus) < plan.world_size:
            raise PreflightRefusal(f"the plan needs {plan.world_size} GPUs{where}, this machine has "
                                   f"{machine.describe()}")
        if wants_gpu and not force:
            found = {name.lower() for name, _, _ in machine.gpus}
            if not any(wants_gpu[0].lower().split("-")[0] in f for f in found):
                raise PreflightRefusal(f"the plan is for {wants_gpu[0]}{where}, this machine has "
                                       f"{machine.describe()}; its predictions do not hold here (--force runs it)")
    return use


def check_memory(plan: ParallelPlan, preset: ModelPreset, cluster: Any, machine: Machine, *, device: str,
                 dtype_bytes: int, force: bool) -> dict[str, int]:
    """Predicted peak bytes per rank (:func:`simulator.memory.memory_per_device`) against free memory."""
    if cluster is None or force:
        return {}
    from simulator.memory import memory_per_device

    predicted = {d: m.total for d, m in memory_per_device(plan, preset, cluster, dtype_bytes=dtype_bytes).items()}
    if device == "cuda":
        for rank, (dev, need) in enumerate(predicted.items()):
            name, _, free = machine.gpus[rank % len(machine.gpus)]
            if need > free:
                raise PreflightRefusal(f"rank {rank} ({dev}) is predicted to need {need / GB:.2f} GB, GPU "
                                       f"{rank % len(machine.gpus)} ({name}) has {free / GB:.2f} GB free; "
                                       "--force runs it anyway")
        return predicted
    need = sum(predicted.values())
    if need > machine.available_ram:
        raise PreflightRefusal(f"the {plan.world_size} ranks are predicted to need {need / GB:.2f} GB "
                               f"({max(predicted.values()) / GB:.2f} GB at most per rank), this machine has "
                               f"{machine.available_ram / GB:.2f} GB RAM available; --force runs it anyway")
    return predicted


def preflight(plan: ParallelPlan, preset: ModelPreset, cluster: Any, *, device: str, dtype: str,
              emulate_on_cpu: bool = False, force: bool = False, machine: Machine | None = None) -> str:
    """Both checks; the device the run uses (``cpu`` or ``cuda``)."""
    machine = machine if machine is not None else this_machine()
    use = check_devices(plan, cluster, machine, device=device, emulate_on_cpu=emulate_on_cpu, force=force)
    check_memory(plan, preset, cluster, machine, device=use, dtype_bytes=2 if dtype != "float32" else 4,
                 force=force)
    return use
