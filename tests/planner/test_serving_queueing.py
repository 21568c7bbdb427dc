"""The serving simulation against queueing theory, and its arrivals, routing, batching and sizing.

With Poisson arrivals, deterministic service and one shared FIFO the serving simulation is
an M/D/c queue, whose mean wait has a closed form: Pollaczek–Khinchine for c = 1
(ρ·D / (2(1 − ρ))) and Crommelin's series for c > 1. The simulated mean waits must land
within 5 % at utilisation 0.5 and 0.8 (fixed seeds; enough requests that the sampling
error, about 1.5 % with these counts (seeds 0-5 spread ±2.5 %), leaves the margin to the model).
"""

from __future__ import annotations

import math
import random

import pytest

from planner.arrivals import bursty, poisson, read_trace
from planner.capacity import boxes_for, offered_rate
from planner.serving import Replica, serve
from profiles.errors import InputError

D = 1.0


def poisson_tail(x: float, n: int) -> float:
    """P(Poisson(x) ≥ n), summed in log space so large x does not underflow."""
    cdf, log_term = 0.0, -x
    for j in range(n):
        cdf += math.exp(log_term)
        log_term += math.log(x) - math.log(j + 1)
    return max(1.0 - cdf, 0.0)


def mdc_mean_wait(lam: float, c: int, service: float = D) -> float:
    """Crommelin (1932): W = D Σ_k [P(N_k ≥ kc) − (c/a) P(N_k ≥ kc + 1)], N_k ~ Poisson(k·a), a = λD."""
    a, total = lam * service, 0.0
    for k in range(1, 10_000):
        t1 = poisson_tail(k * a, k * c)
        total += t1 - (c / a) * poisson_tail(k * a, k * c + 1)
        if t1 < 1e-14:
            break
    return total * service


def test_crommelin_reduces_to_pollaczek_khinchine():
    for rho in (0.3, 0.5, 0.8):
        assert mdc_mean_wait(rho, 1) == pytest.approx(rho * D / (2 * (1 - rho)), rel=1e-6)


def fleet(c: int) -> list[Replica]:
    return [Replica(f"r{i}", 1, lambda shape, batch: D) for i in range(c)]


@pytest.mark.parametrize("c,rho,count", [(1, 0.5, 40_000), (1, 0.8, 150_000), (4, 0.5, 150_000), (4, 0.8, 150_000)])
def test_md_c_mean_wait_matches_the_closed_form(c, rho, count):
    lam = rho * c / D
    stats = serve(poisson(lam, count, (256, 1), random.Random(11)), fleet(c), routing="shared",
                  warmup_fraction=0.02)
    expected = mdc_mean_wait(lam, c)
    assert stats.mean_wait_s == pytest.approx(expected, rel=0.05)
    assert stats.mean_utilisation == pytest.approx(rho, rel=0.03)


def test_one_replica_is_the_same_queue_under_every_routing():
    reqs = poisson(0.6, 5000, (256, 1), random.Random(3))
    waits = {r: serve(reqs, fleet(1), routing=r).mean_wait_s for r in ("shared", "jsq", "least-work", "round-robin")}
    assert max(waits.values()) == pytest.approx(min(waits.values()), rel=1e-9)


def test_jsq_beats_round_robin_with_unequal_replicas():
    slow_fast = [Replica("fast", 1, lambda s, b: 1.0), Replica("slow", 1, lambda s, b: 4.0)]
    reqs = poisson(0.9, 20_000, (256, 1), random.Random(5))
    smart = serve(reqs, slow_fast, routing="least-work")
    blind = serve(reqs, slow_fast, routing="round-robin")
    assert smart.percentile(99) < blind.percentile(99)


def test_batching_serves_same_shape_requests_together():
    calls = []

    def service(shape, batch):
        calls.append(batch)
        return 1.0 + 0.1 * (batch - 1)

    reqs = poisson(2.5, 3000, (256, 1), random.Random(2))  # 2.5× what one unbatched replica serves
    stats = serve(reqs, [Replica("b", 1, service, max_batch=4)], routing="jsq")
    assert max(stats.batch_sizes) > 1 and max(stats.batch_sizes) <= 4
    assert stats.percentile(99) < 60  # stable: batches of 4 in 1.3 s serve 3.1/s > 2.5/s


def test_bursty_keeps_the_mean_rate_and_is_burstier_than_poisson():
    rng = random.Random(9)
    burst = bursty(2.0, 40_000, (256, 1), rng, burst_factor=5, burst_share=0.2, mean_burst_s=20)
    assert offered_rate(burst) == pytest.approx(2.0, rel=0.1)
    calm = poisson(2.0, 40_000, (256, 1), random.Random(9))

    def window_var(reqs):
        counts: dict[int, int] = {}
        for r in reqs:
            counts[int(r.time_s // 10)] = counts.get(int(r.time_s // 10), 0) + 1
        values = list(counts.values())
        mean = sum(values) / len(values)
        return sum((v - mean) ** 2 for v in values) / len(values) / mean

    assert window_var(burst) > 3 * window_var(calm)  # index of dispersion: 1 for Poisson


def test_trace_file_and_its_bad_lines(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("time_s,resolution,steps\n0.5,1024,20\n0.1,2048,\n{\"time_s\": 0.3}\n")
    reqs = read_trace(trace, (512, 8))
    assert [(r.time_s, r.resolution, r.steps) for r in reqs] == [(0.1, 2048, 8), (0.3, 512, 8), (0.5, 1024, 20)]
    trace.write_text("0.1,abc\n")
    with pytest.raises(InputError, match="line 1"):
        read_trace(trace, (512, 8))


def test_a_shape_no_replica_serves_is_refused():
    def only_256(shape, batch):
        if shape[0] != 256:
            raise InputError("cannot serve", field="requests")
        return 1.0

    reqs = poisson(0.1, 10, (512, 1), random.Random(1))
    with pytest.raises(InputError, match="no replica serves 512"):
        serve(reqs, [Replica("r", 1, only_256)])


def test_boxes_pack_replicas_whole():
    assert boxes_for([4, 4, 4], 8) == 2
    assert boxes_for([4, 2, 2, 1, 1, 1, 1], 8) == 2
    with pytest.raises(InputError):
        boxes_for([16], 8)
