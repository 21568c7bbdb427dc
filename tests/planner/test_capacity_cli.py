"""``pfplan capacity`` through the serving simulation: SLO sizing, cost, batching, arrivals, mixes."""

from __future__ import annotations

import json

import pytest

from planner.capacity import PlanService
from planner.job import load_job
from simulator.plan import Degrees, ParallelPlan

COMMON = ["--topology", "cpu2", "--model", "pixart-tiny", "--steps", "4", "--requests", "400"]


def capacity(pfplan, *args):
    result = pfplan("capacity", *COMMON, *args, "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)


def test_every_fleet_shown_meets_the_p99_slo_and_is_priced(pfplan, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("schema_version: 1\ngpus:\n  cpu: {usd_per_gpu_hour: 0.5, source: test, date: '2026-12'}\n")
    fleets = capacity(pfplan, "--rate", "20", "--slo-s", "0.2", "--prices", prices)
    assert fleets
    for f in fleets:
        if f["meets_slo"]:
            assert f["p99_s"] <= 0.2 and f["p50_s"] <= f["p95_s"] <= f["p99_s"]
        assert f["usd_per_hour"] == pytest.approx(0.5 * f["gpus"])
        assert f["usd_per_1000_images"] == pytest.approx(f["usd_per_hour"] / (f["rate"] * 3600) * 1000)
    assert fleets[0]["meets_slo"] and fleets[0]["gpus"] == min(f["gpus"] for f in fleets if f["meets_slo"])


def test_bursts_need_at_least_as_much_as_poisson(pfplan):
    calm = capacity(pfplan, "--rate", "25", "--slo-s", "0.15")[0]
    burst = capacity(pfplan, "--rate", "25", "--slo-s", "0.15", "--arrivals", "bursty", "--burst-factor", "6",
                     "--burst-length-s", "1")[0]
    assert burst["gpus"] > calm["gpus"] or burst["p99_s"] > calm["p99_s"]


def test_a_bursty_stream_spans_several_burst_cycles_at_its_mean_rate():
    """400 requests at 25/s last 16 s, a tenth of one 30 s-burst cycle: the stream runs on until it
    holds five cycles, so its rate is the asked one, not the calm state's half of it."""
    import random

    from planner.arrivals import MIN_BURST_CYCLES, bursty
    from planner.capacity import offered_rate

    reqs = bursty(25.0, 400, (256, 4), random.Random(0), burst_factor=6, mean_burst_s=30.0)
    assert reqs[-1].time_s >= MIN_BURST_CYCLES * 30.0 / 0.2
    assert offered_rate(reqs) == pytest.approx(25.0, rel=0.25)


def test_trace_and_mix(pfplan, tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("time_s,resolution,steps\n" + "".join(f"{i * 0.05:.3f},256,4\n" for i in range(300)))
    fleets = capacity(pfplan, "--arrivals", trace, "--slo-s", "1", "--mix", "1x1,2x1")
    assert any(f["label"].count("+") == 1 for f in fleets)
    assert fleets[0]["rate"] == pytest.approx(20, rel=0.01)


def test_batch_is_priced_by_the_simulator_or_refused():
    cluster, preset, cost = load_job("cpu2", "pixart-tiny", None)
    serial = ParallelPlan(model="pixart-tiny", height_px=256, width_px=256, steps=4)
    svc = PlanService(serial, preset, cluster, cost, max_batch=4)
    one, four = svc.service_s(svc.shape, 1), svc.service_s(svc.shape, 4)
    assert svc.max_batch == 4 and svc.batch_note is None
    assert one < four  # a larger batch takes longer ...
    cfg = PlanService(serial.model_copy(update={"degrees": Degrees(cfg=2)}), preset, cluster, cost, max_batch=4)
    assert cfg.max_batch == 1 and "refused" in (cfg.batch_note or "")


def test_bad_capacity_inputs_are_one_line(pfplan, tmp_path):
    for args, field in ((["--rate", "1", "--routing", "random"], "--routing"), (["--rate", "1", "--mix", "4y2"], "--mix"),
                        ([], "--rate"), (["--rate", "1", "--percentile", "0"], "--percentile")):
        bad = pfplan("capacity", *COMMON, *args)
        assert bad.code == 2 and bad.err.count("\n") == 1 and field in bad.err, (args, bad.err)


def test_shipped_price_table_names_a_source_and_date_for_every_figure():
    from planner.prices import load_prices
    from profiles.catalog.gpus import catalog

    table = load_prices()
    assert set(table.gpus) == set(catalog().gpus)
    for name, entry in table.gpus.items():
        assert entry.source
        if entry.usd_per_gpu_hour is not None:
            assert entry.date and "on-demand" in entry.source and "http" in entry.source, name
