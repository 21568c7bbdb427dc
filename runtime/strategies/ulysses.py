"""Ulysses sequence parallelism for one rank (with CFG and data parallel outside it).

Every step each of the ``u`` ranks of a Ulysses group embeds the whole latent (positions
depend on the whole grid), keeps its band of token rows, runs every block on it (the
attention layers exchange heads for tokens, :mod:`runtime.ulysses`), runs the output layer
on its band, applies guidance to its band (a batch of two, or the exchange of the band with
the other CFG group: guidance is elementwise), and all-gathers the guided bands. The
scheduler step then runs on the whole latent on every rank, so the ranks' latents stay
identical without sending them.

Attention is exact, so the result equals the serial one up to floating-point order.

The trace: ``embed``, ``compute`` between all-to-alls, ``collective`` for each all-to-all
and the band gather, ``final`` and ``scheduler``; the compute and collective spans of a
pass do not overlap, so the trace comparison adds them up per category.
"""

from __future__ import annotations

import copy
import time

import torch

from runtime.strategies.pipefusion import StageSetup, Unit, _guided
from runtime.measure import Recorder
from runtime.ulysses import UlyssesExchange


def band(rows: int, degree: int, index: int) -> tuple[int, int]:
    """Token rows of rank ``index`` of ``degree`` (equal bands; runnable.py requires rows % degree == 0)."""
    if rows % degree:
        raise ValueError(f"{rows} token rows do not split into {degree} equal Ulysses bands")
    size = rows // degree
    return index * size, (index + 1) * size


def record_pass(rec: Recorder, start: float, end: float, intervals: list[tuple[float, float, int]],
                **args: object) -> None:
    """The pass [start, end) as ``compute`` spans between its all-to-alls, which become ``collective`` spans."""
    cursor = start
    for a, b, nbytes in intervals:
        if a > cursor:
            rec.add("blocks", "compute", cursor, a, **args)
        rec.add("all_to_all", "collective", a, b, **args, bytes=nbytes)
        cursor = b
    if end > cursor:
        rec.add("blocks", "compute", cursor, end, **args)


def run_ulysses(s: StageSetup, exchange: UlyssesExchange, index: int) -> torch.Tensor | None:
    """This rank's loop; the final latent on the group's first rank, else None."""
    sched = copy.deepcopy(s.scheduler)
    sched.set_timesteps(s.steps)
    r0, r1 = band(s.rows, exchange.degree, index)
    latent = s.latent.clone()
    ref = s.branch.prompt_embeds if s.branch.prompt_embeds is not None else s.branch.class_label
    batch = int(ref.shape[0])
    layers = len(s.staged.blocks)
    for step, t in enumerate(sched.timesteps):
        s.on_step(step)
        tags = dict(step=step, patch=None, stage=0)
        ctx = s.staged.context(t, s.branch, latent.dtype)
        with s.rec.span("embed", "embed", **tags):
            hidden = s.staged.embed(latent.expand(batch, -1, -1, -1), r0, r1)
            extra = s.staged.initial_extra(ctx)
        exchange.intervals.clear()
        start = time.perf_counter()
        hidden, _ = s.staged.run_blocks(0, layers, hidden, extra, ctx, r0, r1, True)
        if s.rec.cuda:
            torch.cuda.current_stream().synchronize()
        record_pass(s.rec, start, time.perf_counter(), exchange.intervals, layers=f"0-{layers - 1}", layer=0,
                    warmup=step < s.warmup, **tags)
        with s.rec.span("final", "final", **tags):
            mine = s.staged.final(hidden, ctx, r0, r1)
        # guidance is elementwise: guide the band (the CFG exchange moves only the band), then gather
        mine = _guided(s, mine, Unit(step, None, 0, s.rows))
        with s.rec.span("gather prediction", "collective", bytes=mine.numel() * mine.element_size(), **tags):
            noise = s.dist.all_gather_cat(mine, exchange.group, exchange.degree, 2,
                                          f"Ulysses gather of the prediction with {exchange.peers}")
        with s.rec.span("scheduler", "scheduler", **tags):
            latent = sched.step(noise, t, latent, generator=s.generator, return_dict=False)[0]
        s.step_end_s.append(s.rec.now_s())
    return latent if index == 0 else None
