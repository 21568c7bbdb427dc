"""Tensor (Megatron) parallelism for one rank (with CFG and data parallel outside it).

Each of the ``t`` ranks of a tensor group keeps ``1/t`` of every block's attention heads
and MLP width: the Q/K/V projections and the MLP's up projection are split by output
columns, the attention output projection and the MLP's down projection by input rows, and
the partial outputs of a row split are summed by an all-reduce (two per block; one per
Flux single block, whose ``proj_out`` reads attention and MLP together). Which Linears
split how is family knowledge: :meth:`runtime.families.base.FamilyAdapter.tensor_plan`.
Embeddings, norms, AdaLN modulations, HunyuanDiT's skip Linears and the output layer stay
whole on every rank (except RMS norms across all heads, Wan's ``norm_q`` / ``norm_k``: each
rank normalises its heads with the group's all-reduced sum of squares, :class:`ShardedRMSNorm`), so every rank computes the same latent and the loop is the serial one
(diffusers' own forward, on the sharded model).

The sharding is written by hand (slices of each ``nn.Linear``, copied so the full weight is
freed) rather than with ``torch.distributed.tensor.parallel``: that is exact on gloo too
(docs/runtime.md, "Tensor parallel"), but its all-reduce runs inside the DTensor output
redistribution, where it can neither be timed apart from the matmul for the trace nor
waited for with the run's timeout and a named peer; packed layouts (GEGLU, Flux's fused
``proj_out``) would need permuted weights as well. Here the all-reduce is one call of
:class:`AllReduce`, which records its interval and bytes like Ulysses' all-to-alls.

Result: equal to serial up to floating-point summation order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from profiles.catalog.models import ModelPreset
from runtime.dist_context import DistContext, PeerFailure
from runtime.errors import UnrunnablePlan
from runtime.families import adapter_for
from runtime.families.base import TensorSplit
from runtime.measure import record_pass
from runtime.model_inputs import noise_from_output, transformer_kwargs
from runtime.strategies.base import ModelView, PlanShare, StageSetup
from runtime.strategies.serial import batch_of
from simulator.plan import ParallelPlan


@dataclass
class AllReduce:
    """The sum of a row-split Linear's partial outputs over the tensor group, timed."""

    dist: DistContext
    group: Any
    peers: list[int]
    cuda: bool = False
    intervals: list[tuple[float, float, int]] = field(default_factory=list)
    """(start, end, bytes) of each all-reduce of the current pass (``time.perf_counter``)."""

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        tensor = tensor.contiguous()
        if self.cuda:
            torch.cuda.current_stream().synchronize()
        start = time.perf_counter()
        what = f"tensor-parallel all-reduce with ranks {self.peers}"
        try:
            work = dist.all_reduce(tensor, group=self.group, async_op=True)
        except Exception as exc:  # noqa: BLE001 - gloo raises RuntimeError subclasses of several kinds
            raise PeerFailure(f"rank {self.dist.rank}: {what} failed: {exc}") from None
        self.dist._wait(work, what)
        if self.cuda:
            torch.cuda.current_stream().synchronize()
        self.intervals.append((start, time.perf_counter(), tensor.numel() * tensor.element_size()))
        return tensor


class RowParallelLinear(torch.nn.Module):
    """``x @ W[:, mine]ᵀ``, all-reduced over the group, plus the whole bias (added once, after the sum)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, reduce: AllReduce) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
        self.reduce = reduce
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.reduce(torch.nn.functional.linear(x, self.weight))
        return out if self.bias is None else out + self.bias


class ShardedRMSNorm(torch.nn.Module):
    """``torch.nn.RMSNorm`` over a width split across the group (Wan's norms across heads): this
    rank's columns ``x`` are scaled by ``rsqrt(Σ_all x² / width + eps)``, the sum of squares
    all-reduced (one (B, N, 1) tensor per norm), times this rank's slice of the weight."""

    def __init__(self, weight: torch.Tensor | None, eps: float | None, width: int, reduce: AllReduce) -> None:
        super().__init__()
        self.weight = None if weight is None else torch.nn.Parameter(weight, requires_grad=False)
        self.eps, self.width, self.reduce = eps, width, reduce

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        eps = self.eps if self.eps is not None else torch.finfo(x.dtype).eps
        squares = self.reduce(acc.pow(2).sum(-1, keepdim=True))
        out = (acc * torch.rsqrt(squares / self.width + eps)).to(x.dtype)
        return out if self.weight is None else out * self.weight


def split_norm(parent: Any, name: str, degree: int, index: int, reduce: AllReduce) -> None:
    """Replace the RMS norm ``parent.name`` over a column-split width by rank ``index``'s :class:`ShardedRMSNorm`."""
    norm = _get(parent, name)
    width = norm.normalized_shape[-1]
    keep = _indices(width, (1,), degree, index)
    weight = None if norm.weight is None else norm.weight.detach().index_select(0, keep.to(norm.weight.device)).clone()
    _set(parent, name, ShardedRMSNorm(weight, norm.eps, width, reduce))


def _indices(size: int, groups: tuple[int, ...], degree: int, index: int) -> torch.Tensor:
    """Rank ``index``'s positions along a dimension of ``size`` packed in proportional ``groups``."""
    unit, rem = divmod(size, sum(groups))
    if rem:
        raise UnrunnablePlan(f"degrees.tensor: a Linear of width {size} does not pack into {groups}")
    picks, offset = [], 0
    for g in groups:
        width = g * unit
        if width % degree:
            raise UnrunnablePlan(f"degrees.tensor: a Linear of width {width} does not split into {degree} shards")
        shard = width // degree
        picks.append(torch.arange(offset + index * shard, offset + (index + 1) * shard))
        offset += width
    return torch.cat(picks)


def _get(parent: Any, name: str) -> Any:
    return parent[int(name)] if name.isdigit() else getattr(parent, name)


def _set(parent: Any, name: str, module: torch.nn.Module) -> None:
    if name.isdigit():
        parent[int(name)] = module
    else:
        setattr(parent, name, module)


def split_linear(split: TensorSplit, degree: int, index: int, reduce: AllReduce) -> None:
    """Replace ``split``'s Linear by rank ``index``'s shard (a copy; the full weight is dropped)."""
    linear = _get(split.parent, split.name)
    w = linear.weight.detach()
    b = linear.bias.detach() if linear.bias is not None else None
    if split.kind == "column":
        keep = _indices(w.shape[0], split.groups, degree, index).to(w.device)
        new = torch.nn.Linear(w.shape[1], keep.numel(), bias=b is not None, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            new.weight.copy_(w.index_select(0, keep))
            if b is not None:
                new.bias.copy_(b.index_select(0, keep))
        new.requires_grad_(False)
    else:
        keep = _indices(w.shape[1], split.groups, degree, index).to(w.device)
        new = RowParallelLinear(w.index_select(1, keep).clone(), None if b is None else b.clone(), reduce)
    _set(split.parent, split.name, new)


def shard_model(transformer: torch.nn.Module, family: str, degree: int, index: int, reduce: AllReduce) -> None:
    """Cut every block of ``transformer`` down to rank ``index`` of ``degree`` (in place)."""
    adapter = adapter_for(family)
    for block in adapter.blocks(transformer):
        plan = adapter.tensor_plan(block)
        for attn in plan.attentions:
            if attn.heads % degree:
                raise UnrunnablePlan(f"degrees.tensor: {attn.heads} heads do not split into {degree} shards")
        for split in plan.splits:
            split_linear(split, degree, index, reduce)
        for parent, name in plan.norms:
            split_norm(parent, name, degree, index, reduce)
        for attn in plan.attentions:
            attn.heads //= degree
            for width in ("inner_dim", "inner_kv_dim", "kv_inner_dim"):
                if hasattr(attn, width):
                    setattr(attn, width, getattr(attn, width) // degree)


def run_tensor(s: StageSetup, reduce: AllReduce, index: int) -> torch.Tensor | None:
    """The serial loop on the sharded model; the final latent on the group's first rank, else None."""
    m, x, share, r = s.model, s.inputs, s.share, s.recording
    sched = x.sampler(m, share.steps)
    latent = x.latent.clone()
    batch = batch_of(x.branch)
    lo, hi = share.layers.start, share.layers.stop
    for step, t in enumerate(sched.timesteps):
        r.on_step(step)
        tags = dict(step=step, patch=None, stage=0)
        reduce.intervals.clear()
        start = time.perf_counter()
        inp = sched.model_input(latent, step, t).expand(batch, -1, -1, -1)
        out = m.transformer(**transformer_kwargs(m.preset, inp, t, x.branch))[0]
        noise = noise_from_output(m.preset, out, m.rows, m.cols)
        if r.rec.cuda:
            torch.cuda.current_stream().synchronize()
        record_pass(r.rec, start, time.perf_counter(), reduce.intervals, "all_reduce",
                    layers=f"{lo}-{hi - 1}", layer=lo,
                    warmup=True, **tags)
        noise = x.guidance(noise, r.rec, **tags)
        with r.rec.span("scheduler", "scheduler", **tags):
            latent = sched.step(noise, t, latent)
        r.step_end_s.append(r.rec.now_s())
    return latent if index == 0 else None


@dataclass(frozen=True)
class TensorLoop:
    """Diffusers' whole forward on this rank's shard of the model."""

    reduce: AllReduce
    index: int
    staged: None = None

    def run(self, s: StageSetup) -> torch.Tensor | None:
        return run_tensor(s, self.reduce, self.index)


@dataclass(frozen=True)
class Tensor:
    axis: str = "tensor"

    def active(self, plan: ParallelPlan) -> bool:
        return plan.degrees.tensor > 1

    def share(self, plan: ParallelPlan, preset: ModelPreset, coord: Mapping[str, int]) -> PlanShare:
        rows = preset.token_grid(plan.height_px, plan.width_px)[0]
        return PlanShare(steps=plan.steps, warmup=plan.steps, patch_rows=(rows,), layers=plan.stage_layers(preset)[0])

    def prepare(self, model: ModelView, share: PlanShare, dist: DistContext) -> TensorLoop:
        ranks = dist.group_ranks(self.axis)
        reduce = AllReduce(dist, dist.group(self.axis), ranks, cuda=dist.device.type == "cuda")
        index = dist.coord[self.axis]
        shard_model(model.transformer, model.preset.family, len(ranks), index, reduce)
        return TensorLoop(reduce, index)


STRATEGY = Tensor()
