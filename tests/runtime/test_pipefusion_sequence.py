"""PipeFusion × Ulysses / × Ring as xDiT runs it: each patch split across the stage's
sequence-parallel ranks, the stale K/V kept per stage (Ulysses: the whole image for the
rank's heads; Ring: the rank's share of every patch).

Two checks that can fail independently: with W = T (nothing stale) the run equals serial;
with W = 1 it equals plain PipeFusion with the same patches (the same stale K/V, seen by
split ranks), so the buffers hold what PipeFusion's hold, not merely something finite."""

from __future__ import annotations

import pytest

from .helpers import max_diff, plan, run

T = 3


@pytest.mark.parametrize("name, sp", [("pixart-tiny", "ulysses"), ("sd3-tiny", "ring"),
                                      ("flux-tiny", "ulysses"), ("hunyuan-tiny", "ring")])
def test_fresh_equals_serial_and_stale_equals_pipefusion(name, sp):
    steps = 1 if name == "hunyuan-tiny" else T  # DDPM amplifies float order (see test_ring.py)
    serial = run(plan(name, steps=steps))
    scale = float(serial.latents[0].abs().max())
    fresh = run(plan(name, steps=steps, degrees={"pipefusion": 2, sp: 2}, patches=2, warmup_steps=steps))
    assert sorted(fresh.latents) == [0]
    assert max_diff(fresh, serial) <= 2e-5 * scale
    if steps < 2:
        return
    stale = run(plan(name, steps=steps, degrees={"pipefusion": 2, sp: 2}, patches=4, warmup_steps=1))
    pipefusion = run(plan(name, steps=steps, degrees={"pipefusion": 2}, patches=4, warmup_steps=1))
    assert max_diff(stale, pipefusion) <= 1e-5 * scale
    assert max_diff(stale, serial) > 10 * max_diff(stale, pipefusion)  # the patches really were stale


def test_pipefusion_times_usp_on_eight_ranks_keeps_pipefusions_stale_kv():
    """PipeFusion × USP: Ring's buffer behind Ulysses' all-to-all (h/u heads, the group's tokens)."""
    pipefusion = run(plan("sd3-tiny", steps=2, degrees={"pipefusion": 2}, patches=2, warmup_steps=1))
    usp = run(plan("sd3-tiny", steps=2, degrees={"pipefusion": 2, "ulysses": 2, "ring": 2}, patches=2,
                   warmup_steps=1), timeout_s=120)
    assert sorted(usp.latents) == [0]
    assert max_diff(usp, pipefusion) <= 1e-5 * float(pipefusion.latents[0].abs().max())
