"""Process groups and point-to-point transfers of one rank, held in an object (no globals).

The world is laid out by :mod:`simulator.rank_groups` (data × cfg × pipefusion × … ×
ulysses, outermost first), so rank arithmetic is shared with the planner and the simulator. Every wait has
the run's timeout and a failure names the peer it was waiting for, which is how a dead
rank surfaces as one clear line on the others. Tensors are made contiguous before they
are sent (gloo raises on the sender, and hangs the receiver, otherwise).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch

from runtime.errors import RuntimeFailure
from simulator.rank_groups import coords, group_of, groups


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
    cfg_group: Any = None
    ulysses_group: Any = None
    """This rank's Ulysses (sequence-parallel) group: all-to-alls inside every attention layer."""
    forward_group: Any = None
    """Stage d → d+1 traffic (hidden states of patches)."""
    return_group: Any = None
    """Last stage → stage 0 traffic (latent rows). A separate group per direction keeps NCCL
    from serialising a pair's sends and receives on one stream (which deadlocks a 2-stage ring)."""
    max_pending_sends: int = 8
    _pending: deque = field(default_factory=deque)

    @classmethod
    def single(cls, degrees: dict[str, int], timeout_s: float, device: torch.device) -> "DistContext":
        return cls(rank=0, world_size=1, degrees=degrees, timeout_s=timeout_s, device=device)

    def make_groups(self) -> None:
        """Create every PipeFusion, CFG and Ulysses group (all ranks create all, in the same order)."""
        import torch.distributed as dist

        timeout = timedelta(seconds=self.timeout_s)
        if self.degrees.get("pipefusion", 1) > 1:
            everyone = list(range(self.world_size))
            self.forward_group = dist.new_group(everyone, timeout=timeout)
            self.return_group = dist.new_group(everyone, timeout=timeout)
        for axis, attr in (("cfg", "cfg_group"), ("ulysses", "ulysses_group")):
            if self.degrees.get(axis, 1) < 2:
                continue
            for ranks in groups(axis, self.degrees):
                pg = dist.new_group(ranks, timeout=timeout)
                if self.rank in ranks:
                    setattr(self, attr, pg)

    @property
    def coord(self) -> dict[str, int]:
        return coords(self.rank, self.degrees)

    def pipeline(self) -> list[int]:
        """Ranks of this rank's PipeFusion group, in stage order."""
        return group_of(self.rank, "pipefusion", self.degrees)

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
            work = dist.all_gather(out, tensor.contiguous(), group=self.cfg_group, async_op=True)
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


@dataclass
class PendingRecv:
    ctx: DistContext
    work: Any
    buf: torch.Tensor
    src: int

    def wait(self) -> torch.Tensor:
        self.ctx._wait(self.work, f"receive from rank {self.src}")
        return self.buf
