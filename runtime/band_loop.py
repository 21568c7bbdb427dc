"""The band loop: each rank of a group runs every block on an equal band of token rows.

Shared by Ulysses, Ring, USP (their :class:`~runtime.attention.sequence_group.SequenceGroup`)
and DistriFusion (its :class:`~runtime.attention.patch_parallel_kv.BandExchange`), which
differ only inside the attention layers, and in how they cut the bands: DistriFusion in
whole token rows (uneven bands allowed), the sequence group in equal shares of the tokens
(whole rows where the rows divide; else a band ends mid-row, and the group joins the bands'
hidden states before the output layer, which unpatchifies whole rows). Every step each rank
embeds the whole latent (positions depend on the whole grid) and keeps its band, runs every
block on it, runs the
output layer on its band, guides its band (guidance is elementwise: a batch of two, or the
exchange of the band with the other CFG group, :mod:`runtime.strategies.cfg`), and the
group gathers the guided bands. The scheduler step then runs on the whole latent on every
rank, so the ranks' latents stay identical without sending them.

The trace: ``embed``, ``compute`` between the pass's transfers, ``collective`` for each
transfer (named by the hook) and the band gather, ``final`` and ``scheduler``; the compute
and collective spans of a pass do not overlap, so the trace comparison adds them up.

Beside :mod:`runtime.staged_model`, not in :mod:`runtime.strategies` (whose every module is one
strategy): the loop several strategies run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from runtime.staged_model import StagedModel
from runtime.strategies.base import PlanShare, StageSetup
from runtime.strategies.serial import batch_of


class BandHook(Protocol):
    """What the band loop needs from the attention exchange of its group."""

    degree: int
    index: int
    """This rank's band, in row order."""

    def band_tokens(self, rows: int, cols: int) -> tuple[int, int]:
        """The image tokens [s0, s1) of this rank's band of a ``rows × cols`` token grid."""
        ...

    def begin_step(self, step: int, share: PlanShare) -> bool:
        """Set up the exchange for ``step``; whether the step is a synchronous (warm-up) one."""
        ...

    def clear(self) -> None:
        """Forget the transfers timed so far (before a pass)."""
        ...

    def record(self, rec: Any, start: float, end: float, **args: object) -> None:
        """The pass [start, end) as compute spans between the transfers timed since :meth:`clear`."""
        ...

    def gather(self, mine: torch.Tensor, dim: int = 2) -> torch.Tensor:
        """Every band's ``mine`` joined along ``dim`` in band order: the latent's rows (a
        prediction), or the tokens (``dim=1``: hidden states of bands that are not whole rows)."""
        ...


def band_rows(rows: int, degree: int) -> list[int]:
    """Token rows of each band, as even as possible, the larger first: (8, 3) → [3, 3, 2]
    (Ulysses and Ring need them equal: their simulator strategies refuse the rest)."""
    base, extra = divmod(rows, degree)
    return [base + (1 if i < extra else 0) for i in range(degree)]


def band(rows: int, degree: int, index: int) -> tuple[int, int]:
    """Token rows [r0, r1) of band ``index`` of ``degree`` (:func:`band_rows`)."""
    sizes = band_rows(rows, degree)
    r0 = sum(sizes[:index])
    return r0, r0 + sizes[index]


def run_bands(s: StageSetup, staged: StagedModel, hook: BandHook) -> torch.Tensor | None:
    """This rank's loop; the final latent on the group's first rank, else None."""
    x, r = s.inputs, s.recording
    sched = x.sampler(s.model, s.share.steps)
    s0, s1 = hook.band_tokens(staged.rows, staged.cols)
    whole = staged.whole_rows(s0, s1)
    latent = x.latent.clone()
    batch = batch_of(x.branch)
    layers = len(staged.blocks)
    for step, t in enumerate(sched.timesteps):
        r.on_step(step)
        warmup = hook.begin_step(step, s.share)
        tags = dict(step=step, patch=None, stage=0)
        ctx = staged.context(t, x.branch, latent.dtype)
        with r.rec.span("embed", "embed", **tags):
            hidden = staged.embed_tokens(sched.model_input(latent, step, t).expand(batch, -1, -1, -1), s0, s1)
            extra = staged.initial_extra(ctx)
        hook.clear()
        start = time.perf_counter()
        hidden, _ = staged.run_blocks_tokens(0, layers, hidden, extra, ctx, s0, s1, True)
        if r.rec.cuda:
            torch.cuda.current_stream().synchronize()
        hook.record(r.rec, start, time.perf_counter(), layers=f"0-{layers - 1}", layer=0, warmup=warmup, **tags)
        if whole:
            with r.rec.span("final", "final", **tags):
                mine = staged.final(hidden, ctx, *staged.enclosing_rows(s0, s1))
            mine = x.guidance(mine, r.rec, **tags)  # elementwise: guide the band, then gather
            with r.rec.span("gather prediction", "collective", bytes=mine.numel() * mine.element_size(), **tags):
                noise = hook.gather(mine)
        else:  # the output layer unpatchifies whole rows: join the bands' hidden states first
            with r.rec.span("gather hidden", "collective", bytes=hidden.numel() * hidden.element_size(), **tags):
                hidden = hook.gather(hidden, dim=1)
            with r.rec.span("final", "final", **tags):
                noise = x.guidance(staged.final(hidden, ctx, 0, staged.rows), r.rec, **tags)
        with r.rec.span("scheduler", "scheduler", **tags):
            latent = sched.step(noise, t, latent)
        r.step_end_s.append(r.rec.now_s())
    return latent if hook.index == 0 else None


@dataclass(frozen=True)
class BandLoop:
    """Every block on this rank's band; the hook's attention sees the whole image."""

    staged: StagedModel
    hook: BandHook

    def run(self, s: StageSetup) -> torch.Tensor | None:
        return run_bands(s, self.staged, self.hook)
