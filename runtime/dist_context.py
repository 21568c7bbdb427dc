"""Process groups and point-to-point transfers of one rank, held in an object (no globals).

The world is laid out by :mod:`simulator.rank_groups` (data × cfg × pipefusion × … ×
ulysses × tensor, outermost first), so rank arithmetic is shared with the planner and the
simulator. The groups come from one ``torch.distributed`` :class:`DeviceMesh` whose named
dimensions are those axes in that order (row-major, as ``rank_groups.coords``), as torchtitan
builds its meshes: ``group("cfg")`` is this rank's CFG group, for every axis, and a strategy
asks for its own axis by name. Every wait has the run's timeout and a failure names the peer
it was waiting for, which is how a dead rank surfaces as one clear line on the others.
Tensors are made contiguous before they are sent (gloo raises on the sender, and hangs the
receiver, otherwise). A one-rank run has no process group, no mesh, and no group at all.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch

from runtime.errors import RuntimeFailure
from simulator.rank_groups import AXES, coords, group_of


class PeerFailure(RuntimeFailure):
    """A transfer or collective failed or timed out: most likely another rank died."""


@dataclass
class DistContext:
    """This rank's place in the plan's grid, its groups and its outstanding sends."""

    rank: int
    world_size: int
    degrees: dict[str, int]
    timeout_s: float
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    mesh: Any = None
    """The world's ``DeviceMesh``, one dimension per axis of :data:`~simulator.rank_groups.AXES`
    (None on one rank)."""
    forward_group: Any = None
    """Stage d → d+1 traffic (hidden states of patches): the mesh's ``pipefusion`` group."""
    return_group: Any = None
    """Last stage → stage 0 traffic (latent rows): a second group of the same pipeline's ranks.
    A separate group per direction keeps NCCL from serialising a pair's sends and receives on
    one stream (which deadlocks a 2-stage ring)."""
    max_pending_sends: int = 8
    _pending: deque = field(default_factory=deque)

    @classmethod
    def single(cls, degrees: dict[str, int], timeout_s: float, device: torch.device) -> "DistContext":
        return cls(rank=0, world_size=1, degrees=degrees, timeout_s=timeout_s, device=device)

    def make_groups(self) -> None:
        """Build the mesh, then the PipeFusion return groups (every rank, after the process group).

        A mesh hands out one group per dimension; the return direction needs a second group
        over each pipeline's ranks, so it is made from the rows of the mesh's ``pipefusion``
        dimension (:func:`mesh_groups`).
        """
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        if self.device.type == "cuda":  # the mesh picks a GPU itself unless CUDA is already set up on ours
            torch.cuda.set_device(self.device)
            torch.cuda.init()
        timeout = timedelta(seconds=self.timeout_s)
        options = _group_options(dist.get_backend(), timeout)
        shape = tuple(self.degrees.get(axis, 1) for axis in AXES)
        self.mesh = init_device_mesh(self.device.type, shape, mesh_dim_names=AXES,
                                     backend_override={axis: options for axis in AXES} if options else None)
        if self.degrees.get("pipefusion", 1) > 1:
            self.forward_group = self.mesh.get_group("pipefusion")
            self.return_group, _ = dist.new_subgroups_by_enumeration(mesh_groups(self.mesh, "pipefusion"),
                                                                      timeout=timeout)

    def group(self, axis: str) -> Any:
        """This rank's process group along ``axis`` (None on one rank)."""
        return self.mesh.get_group(axis) if self.mesh is not None else None

    def group_ranks(self, axis: str) -> list[int]:
        """The ranks of this rank's group along ``axis``, in axis order."""
        return group_of(self.rank, axis, self.degrees)

    @property
    def coord(self) -> dict[str, int]:
        return coords(self.rank, self.degrees)

    def pipeline(self) -> list[int]:
        """Ranks of this rank's PipeFusion group, in stage order."""
        return self.group_ranks("pipefusion")

    def _wait(self, work: Any, what: str) -> None:
        try:
            work.wait(timeout=timedelta(seconds=self.timeout_s))
        except Exception as exc:  # noqa: BLE001 - gloo raises RuntimeError subclasses of several kinds
            raise PeerFailure(f"rank {self.rank}: {what} failed: {str(exc).splitlines()[0][:200]}") from None

    def isend(self, tensor: torch.Tensor, dst: int, group: Any = None) -> None:
        """Start a send; waits only when more than ``max_pending_sends`` are outstanding."""
        import torch.distributed as dist

        tensor = tensor.contiguous()
        self._pending.append((dist.isend(tensor, dst, group=group), tensor, dst))
        while len(self._pending) > self.max_pending_sends:
            work, _, peer = self._pending.popleft()
            self._wait(work, f"send to rank {peer}")

    def flush(self) -> None:
        while self._pending:
            work, _, peer = self._pending.popleft()
            self._wait(work, f"send to rank {peer}")

    def irecv(self, shape: tuple[int, ...], dtype: torch.dtype, src: int, group: Any = None) -> "PendingRecv":
        import torch.distributed as dist

        buf = torch.empty(shape, dtype=dtype, device=self.device)
        return PendingRecv(self, dist.irecv(buf, src, group=group), buf, src)

    def exchange_cfg(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-gather of this branch's prediction with the other CFG branch: (uncond, cond) batch."""
        import torch.distributed as dist

        out = [torch.empty_like(tensor) for _ in range(2)]
        try:
            work = dist.all_gather(out, tensor.contiguous(), group=self.group("cfg"), async_op=True)
        except Exception as exc:  # noqa: BLE001
            raise PeerFailure(f"rank {self.rank}: CFG exchange failed: {exc}") from None
        self._wait(work, "CFG exchange with the other branch")
        return torch.cat(out, dim=0)

    def all_to_all(self, tensor: torch.Tensor, group: Any, what: str) -> torch.Tensor:
        """``all_to_all_single`` along dim 0 (equal chunks), waited for with the run's timeout."""
        import torch.distributed as dist

        tensor = tensor.contiguous()
        out = torch.empty_like(tensor)
        try:
            work = dist.all_to_all_single(out, tensor, group=group, async_op=True)
        except Exception as exc:  # noqa: BLE001
            raise PeerFailure(f"rank {self.rank}: {what} failed: {exc}") from None
        self._wait(work, what)
        return out

    def all_gather_cat(self, tensor: torch.Tensor, group: Any, size: int, dim: int, what: str) -> torch.Tensor:
        """All-gather ``tensor`` from the ``size`` ranks of ``group``, concatenated along ``dim`` in rank order."""
        import torch.distributed as dist

        out = [torch.empty_like(tensor) for _ in range(size)]
        try:
            work = dist.all_gather(out, tensor.contiguous(), group=group, async_op=True)
        except Exception as exc:  # noqa: BLE001
            raise PeerFailure(f"rank {self.rank}: {what} failed: {exc}") from None
        self._wait(work, what)
        return torch.cat(out, dim=dim)

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.world_size > 1:
            self._wait(dist.barrier(async_op=True), "barrier")


def mesh_groups(mesh: Any, axis: str) -> list[list[int]]:
    """Every group of ``mesh`` along ``axis`` (ranks that differ only there), in axis order."""
    size = mesh.size(mesh.mesh_dim_names.index(axis))
    return mesh.mesh.movedim(mesh.mesh_dim_names.index(axis), -1).reshape(-1, size).tolist()


def _group_options(backend: str, timeout: timedelta) -> tuple[str, Any] | None:
    """Backend options carrying the run's timeout for the mesh's groups (``init_device_mesh`` takes no
    timeout; its groups would otherwise wait the backend's default, 30 minutes)."""
    import torch.distributed as dist

    if backend == "gloo":
        options = dist.ProcessGroupGloo._Options()
    elif backend == "nccl":
        options = dist.ProcessGroupNCCL.Options()
    else:
        return None
    options._timeout = timeout
    return backend, options


@dataclass
class PendingRecv:
    ctx: DistContext
    work: Any
    buf: torch.Tensor
    src: int

    def wait(self) -> torch.Tensor:
        self.ctx._wait(self.work, f"receive from rank {self.src}")
        return self.buf
