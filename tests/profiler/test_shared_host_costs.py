"""The costs of ranks sharing one host: the in-loop collective extra and the co-run slowdown.

The measurements themselves are timing (their values depend on the load); these tests check
that they run, land in the profile, and reach the simulator exactly as documented.
"""

from __future__ import annotations

import time

import pytest

from planner.commands_simulate import link_fits_from
from profiler.links import STREAM_OPS, LinkSettings, links_profile, measure_links
from profiles.catalog.models import load_model
from profiles.costs.profile_format import CoRunTiming, load_profile
from profiles.costs.profiled import load_profiled_cost_model
from profiles.topology.graph import load_cluster
from simulator.engine import simulate
from simulator.plan import plan_from_spec


def test_in_loop_measurement_runs_and_fills_every_curve_and_the_link() -> None:
    cluster = load_cluster("cpu2")
    settings = LinkSettings(sizes_bytes=(4096, 65536), warmup=0, repeats=1, in_loop=True)
    raw = measure_links(cluster, settings)
    assert {r["op"] for r in raw["in_loop"]} == {"all_gather", "all_to_all", "all_reduce", "p2p", *STREAM_OPS}
    assert all(r["compute_s"] > 0 for r in raw["in_loop"] if r["op"] not in STREAM_OPS)
    profile = links_profile(cluster, settings, raw, command="test")
    assert all(c.in_loop_extra_us >= 0 for c in profile.collectives)
    stream = {r["op"]: r["seconds"] for r in raw["in_loop"] if r["op"] in STREAM_OPS and r["bytes"] == 65536}
    assert profile.links[0].in_loop_send_cpu_us == pytest.approx(max(stream["p2p_send_cpu"], 0) * 1e6)
    assert profile.links[0].in_loop_recv_cpu_us == pytest.approx(max(stream["p2p_recv_cpu"], 0) * 1e6)


@pytest.mark.timing  # two ranks' loops on two cores: run alone (make test runs these first)
def test_a_stream_charges_a_costly_post_to_the_sender_only(monkeypatch) -> None:
    """1 ms of CPU spun in every ``isend`` must show in the sender's figure and not the receiver's (the ranks
    are forked: the patch goes with them); a measurement that let either end wait on the other would put
    it on both. Load can make one measurement's receiver wait (a fresh-clone CI run read 0.45 ms for it
    with a 0.4 ms spin), so a miss earns a second look, and the test fails only when both miss."""
    from runtime.dist_context import DistContext

    isend = DistContext.isend

    def costly_isend(self, tensor, dst, group=None):
        until = time.perf_counter() + 1e-3
        while time.perf_counter() < until:
            pass
        return isend(self, tensor, dst, group)

    monkeypatch.setattr(DistContext, "isend", costly_isend)
    looks = []
    for _ in range(2):
        raw = measure_links(load_cluster("cpu2"), LinkSettings(sizes_bytes=(4096,), warmup=1, repeats=3, in_loop=True))
        stream = {r["op"]: r["seconds"] for r in raw["in_loop"] if r["op"] in STREAM_OPS and r["bytes"] == 65536}
        looks.append(stream)
        if stream["p2p_send_cpu"] > 8e-4 and stream["p2p_recv_cpu"] < stream["p2p_send_cpu"] - 5e-4:
            return
    pytest.fail(f"sender's figure not above 0.8 ms and 0.5 ms above the receiver's in two looks: {looks}")


def test_extras_are_what_the_loop_took_beyond_the_back_to_back_figures() -> None:
    cluster = load_cluster("cpu2")
    settings = LinkSettings(sizes_bytes=(4096, 65536), repeats=1)
    raw = {"p2p": [{"pair": "0->1", "route_class": "PHB", "bytes": n, "seconds": 50e-6 + n / 5e9, "repeats": 1}
                   for n in (4096, 65536)],
           "collectives": [{"op": "all_to_all", "group_size": 2, "bytes": n, "seconds": 100e-6 + n / 2e9,
                            "repeats": 1} for n in (4096, 65536)],
           "in_loop": [{"op": "all_to_all", "group_size": 2, "bytes": 65536, "seconds": 100e-6 + 65536 / 2e9 + 400e-6},
                       {"op": "p2p", "group_size": 2, "bytes": 65536, "seconds": 50e-6 + 65536 / 5e9 + 300e-6}]}
    profile = links_profile(cluster, settings, raw, command="test")
    assert profile.collectives[0].in_loop_extra_us == pytest.approx(400, rel=1e-6)
    assert profile.links[0].in_loop_extra_us == pytest.approx(300, rel=1e-3)


def test_shipped_links_extras_reach_the_simulator() -> None:
    loaded = load_profile("cpu2-links")
    fits = link_fits_from("cpu2-links")
    fit = fits[loaded.links[0].route_class]
    assert fit.latency_us == pytest.approx(loaded.links[0].latency_us + loaded.links[0].in_loop_extra_us)
    for curve, timing in zip((c for c in loaded.collectives if c.points), fit.collectives):
        if curve.in_loop_points:  # calls are timed from the in-loop points, with no extra on top
            assert timing.extra_s == 0.0
            assert {(p.bytes, p.seconds) for p in curve.in_loop_points} <= set(timing.points)
        else:
            assert timing.extra_s == pytest.approx(curve.in_loop_extra_us * 1e-6)


class _Slowed:
    """The shipped CPU cost model with a fixed co-run slowdown."""

    def __init__(self, inner, factor: float) -> None:
        self.inner, self.factor = inner, factor

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def concurrent_slowdown(self, ranks: int, workload: str = "forward") -> float:
        return self.factor


def _breakdown(spec: str, cost) -> dict[str, float]:
    model, cluster = load_model("pixart-tiny"), load_cluster("cpu2")
    plan = plan_from_spec("pixart-tiny", spec, height_px=256, width_px=256, steps=4, topology="cpu2")
    return simulate(plan, model, cluster, cost, dtype_bytes=4).prediction.breakdown_s


def test_co_run_slowdown_scales_compute_of_shared_hosts_and_the_vae_only_when_replicas_decode_together() -> None:
    base = load_profiled_cost_model("pixart-tiny-cpu", load_model("pixart-tiny"), gpu_name="cpu")
    base.profile = base.profile.model_copy(update={"corun": []})  # no factor of its own
    slowed = _Slowed(base, 1.5)
    assert _breakdown("", slowed) == pytest.approx(_breakdown("", base))  # one rank: nothing shared
    for spec, vae in (("data=2", 1.5), ("ulysses=2", 1.0)):
        fast, slow = _breakdown(spec, base), _breakdown(spec, slowed)
        assert slow["compute"] == pytest.approx(1.5 * fast["compute"])
        assert slow["vae"] == pytest.approx(vae * fast["vae"])


def test_the_profile_picks_the_factor_for_the_rank_count() -> None:
    model = load_model("pixart-tiny")
    cost = load_profiled_cost_model("pixart-tiny-cpu", model, gpu_name="cpu")
    entries = [CoRunTiming(ranks=r, batch=2, query_tokens=256, alone_s=1.0, together_s=f, slowdown=f, repeats=1)
               for r, f in ((2, 1.3), (4, 1.8))]
    cost.profile = cost.profile.model_copy(update={"corun": entries})
    assert cost.concurrent_slowdown(1) is None
    assert [cost.concurrent_slowdown(n) for n in (2, 3, 4, 8)] == [1.3, 1.3, 1.8, 1.8]


def test_the_vae_takes_its_own_factor_where_measured_else_the_forwards() -> None:
    model = load_model("pixart-tiny")
    cost = load_profiled_cost_model("pixart-tiny-cpu", model, gpu_name="cpu")
    forward = CoRunTiming(ranks=2, batch=2, query_tokens=256, alone_s=1.0, together_s=1.3, slowdown=1.3, repeats=1)
    vae = forward.model_copy(update={"workload": "vae_decode", "batch": 1, "slowdown": 1.7})
    cost.profile = cost.profile.model_copy(update={"corun": [forward]})
    assert cost.concurrent_slowdown(2, "vae_decode") == 1.3
    cost.profile = cost.profile.model_copy(update={"corun": [forward, vae]})
    assert (cost.concurrent_slowdown(2), cost.concurrent_slowdown(2, "vae_decode")) == (1.3, 1.7)
    fast = _breakdown("data=2", cost)
    cost.profile = cost.profile.model_copy(update={"corun": [forward]})
    assert fast["vae"] == pytest.approx(_breakdown("data=2", cost)["vae"] * 1.7 / 1.3)
