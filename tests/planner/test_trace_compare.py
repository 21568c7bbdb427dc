"""``pfplan validate``: hand-built traces with exact expected errors, refusals, and one real run."""

from __future__ import annotations

import json

import pytest

from planner.trace_compare import TraceComparison, compare, union_s
from profiles.errors import InputError
from simulator.plan import ParallelPlan
from simulator.trace import Trace, TraceEvent, TraceMeta, load_trace, write_trace

PLAN = ParallelPlan(model="pixart-tiny", height_px=128, width_px=128, steps=2, degrees={"pipefusion": 2},
                    patches=2, warmup_steps=1, topology="cpu2")


def trace(source: str, events: list[tuple], *, plan: ParallelPlan = PLAN, model: str = "pixart-tiny") -> Trace:
    """events: (rank, cat, start µs, end µs, args)."""
    work = [TraceEvent(name=cat, cat=cat, tid=rank, ts=a, dur=b - a, args=args) for rank, cat, a, b, args in events]
    meta = TraceMeta(source=source, model=model, plan=plan.model_dump(mode="json"), device="test",
                     latency_s=max(b for _, _, _, b, _ in events) / 1e6)
    return Trace(traceEvents=work, metadata=meta)


W0 = {"step": 0, "warmup": True}


def s1(patch: int, stage: int) -> dict:
    return {"step": 1, "patch": patch, "stage": stage, "warmup": False}


SIMULATED = [
    (0, "embed", 0, 100, W0), (0, "compute", 100, 1100, {**W0, "stage": 0}), (0, "send", 1100, 1200, W0),
    (1, "wait", 0, 1100, W0), (1, "recv", 1100, 1200, W0), (1, "compute", 1200, 2200, {**W0, "stage": 1}),
    (1, "final", 2200, 2300, W0),
    (0, "compute", 2300, 2800, s1(0, 0)), (1, "compute", 2800, 3300, s1(0, 1)), (1, "final", 3300, 3400, s1(0, 1)),
]
MEASURED = [
    (0, "embed", 0, 100, W0), (0, "compute", 100, 2100, {**W0, "stage": 0}), (0, "send", 2100, 2200, W0),
    (1, "recv", 0, 2200, W0), (1, "compute", 2200, 4200, {**W0, "stage": 1}), (1, "final", 4200, 4300, W0),
    (1, "scheduler", 4300, 4400, W0),
    (0, "compute", 4400, 4900, s1(0, 0)), (1, "compute", 4900, 5650, s1(0, 1)), (1, "final", 5650, 5750, s1(0, 1)),
    (1, "scheduler", 5750, 5850, s1(0, 1)), (1, "vae", 5850, 15850, {}),
]


def test_exact_errors_of_a_hand_built_pair():
    c = compare(trace("simulated", SIMULATED), trace("measured", MEASURED))
    assert c.compared_categories == ["compute", "embed", "final", "communication"]
    # the scheduler and VAE only the measured trace has are left out: its last compared event ends at 5750 µs
    assert (c.latency.simulated_s, c.latency.measured_s) == pytest.approx((3400e-6, 5750e-6))
    assert c.latency.error_pct == pytest.approx((5750 - 3400) / 3400 * 100)
    assert c.measured_reported_latency_s == pytest.approx(15850e-6)
    busy = {(row.category, row.rank): (row.simulated_s * 1e6, row.measured_s * 1e6, row.error_pct)
            for row in c.categories}
    assert busy == {
        ("compute", 0): (pytest.approx(1500), pytest.approx(2500), pytest.approx(100 * 1000 / 1500)),
        ("compute", 1): (pytest.approx(1500), pytest.approx(2750), pytest.approx(100 * 1250 / 1500)),
        ("embed", 0): (pytest.approx(100), pytest.approx(100), pytest.approx(0)),
        ("final", 1): (pytest.approx(200), pytest.approx(200), pytest.approx(0)),
        ("communication", 0): (pytest.approx(100), pytest.approx(100), pytest.approx(0)),
        # simulated wait + recv (0-1200 µs) against the runtime's blocking recv (0-2200 µs)
        ("communication", 1): (pytest.approx(1200), pytest.approx(2200), pytest.approx(100 * 1000 / 1200)),
    }
    steps = [(s.step, s.warmup, s.simulated_s * 1e6, s.measured_s * 1e6, s.error_pct) for s in c.steps]
    assert steps == [(0, True, pytest.approx(2300), pytest.approx(4300), pytest.approx(100 * 2000 / 2300)),
                     (1, False, pytest.approx(1100), pytest.approx(1450), pytest.approx(100 * 350 / 1100))]
    u = c.compute_units
    assert u.matched == 4
    assert (u.median_ratio, u.min_ratio, u.max_ratio, u.worst_ratio) == pytest.approx((1.75, 1.0, 2.0, 2.0))
    assert (u.worst_unit.rank, u.worst_unit.step, u.worst_unit.patch, u.worst_unit.stage) == (0, 0, None, 0)
    assert (u.warmup_median_ratio, u.steady_median_ratio) == pytest.approx((2.0, 1.25))
    assert [(o.side, o.kind, o.name, o.busy_s * 1e6) for o in c.one_sided] == [
        ("measured", "category", "scheduler", pytest.approx(200)),
        ("measured", "category", "vae", pytest.approx(10000))]


def test_identical_timelines_have_zero_error():
    sim = trace("simulated", SIMULATED)
    meas = trace("measured", SIMULATED)
    c = compare(sim, meas)
    assert c.latency.error_pct == 0 and all(row.error_pct == 0 for row in c.categories)
    assert all(s.error_pct == 0 for s in c.steps) and c.compute_units.median_ratio == 1 and not c.one_sided


def test_steps_ranks_and_units_only_one_side_has_are_listed_not_counted():
    extra = [(0, "compute", 6000, 6500, {"step": 2, "patch": 0, "stage": 0, "warmup": False}),
             (2, "compute", 0, 300, {**W0, "stage": 0})]
    c = compare(trace("simulated", SIMULATED), trace("measured", MEASURED + extra))
    lone = [(o.side, o.kind, o.name) for o in c.one_sided]
    assert ("measured", "rank", "rank 2") in lone
    assert ("measured", "step", "step 2") in lone
    assert ("measured", "compute_unit", "rank 0 step 2 patch 0 stage 0") in lone
    assert [s.step for s in c.steps] == [0, 1]
    assert c.compute_units.matched == 4
    assert c.latency.measured_s == pytest.approx(6500e-6)  # the step-2 event is on a shared rank and category


def test_busy_time_counts_overlaps_once():
    events = [TraceEvent(name="a", ts=0, dur=100), TraceEvent(name="b", ts=50, dur=100),
              TraceEvent(name="c", ts=400, dur=10), TraceEvent(name="d", ts=60, dur=10)]
    assert union_s(events) == pytest.approx(160e-6)


@pytest.mark.parametrize(("sim", "meas", "field"), [
    (trace("simulated", SIMULATED), trace("simulated", SIMULATED), "metadata.source"),
    (trace("measured", SIMULATED), trace("measured", SIMULATED), "metadata.source"),
    (trace("measured", MEASURED), trace("simulated", SIMULATED), "metadata.source"),
    (trace("simulated", SIMULATED).model_copy(update={"metadata": TraceMeta(source="simulated", model="pixart-tiny")}),
     trace("measured", MEASURED), "metadata.plan"),
    (trace("simulated", SIMULATED), trace("measured", MEASURED, model="dit-tiny"), "metadata.model"),
    (trace("simulated", SIMULATED), trace("measured", MEASURED, plan=PLAN.model_copy(update={"patches": 3})),
     "metadata.plan.patches"),
    (trace("simulated", SIMULATED),
     trace("measured", MEASURED, plan=PLAN.model_copy(update={"degrees": PLAN.degrees.model_copy(update={"cfg": 2})})),
     "metadata.plan.degrees.cfg"),
])
def test_refuses_pairs_that_do_not_match(sim, meas, field):
    with pytest.raises(InputError) as err:
        compare(sim, meas)
    assert err.value.field == field and "\n" not in err.value.one_line()


def test_topology_and_prediction_do_not_make_plans_different():
    other = PLAN.model_copy(update={"topology": "pcie8", "notes": ["x"]})
    assert compare(trace("simulated", SIMULATED), trace("measured", MEASURED, plan=other)).compute_units.matched == 4


def test_cli_table_json_and_bad_input(pfplan, tmp_path):
    sim, meas = tmp_path / "sim.json", tmp_path / "meas.json"
    write_trace(sim, trace("simulated", SIMULATED))
    write_trace(meas, trace("measured", MEASURED))
    table = pfplan("validate", sim, meas)
    assert table.code == 0, table.err
    assert "+69.1%" in table.out and "only in the measured trace (category, not counted as error): vae" in table.out
    as_json = pfplan("validate", sim, meas, "--json")
    assert as_json.code == 0
    assert TraceComparison.model_validate(json.loads(as_json.out)).latency.error_pct == pytest.approx(69.1176, 1e-4)
    same = pfplan("validate", sim, sim)
    assert same.code == 2 and same.err.count("\n") == 1 and "metadata.source" in same.err
    (tmp_path / "junk.json").write_text("{}")
    junk = pfplan("validate", tmp_path / "junk.json", meas)
    assert junk.code == 2 and junk.err.count("\n") == 1 and "junk.json" in junk.err
    missing = pfplan("validate", tmp_path / "nope.json", meas)
    assert missing.code == 2 and missing.err.count("\n") == 1


@pytest.mark.slow
def test_real_run_against_its_simulation(pfplan, pfrun, tmp_path):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(PLAN.model_dump(mode="json", exclude_none=True)))
    ran = pfrun("--plan", plan_file, "--trace", tmp_path / "measured.json")
    assert ran.code == 0, ran.err
    simulated = pfplan("simulate", "--plan", plan_file, "--trace", tmp_path / "simulated.json")
    assert simulated.code == 0, simulated.err
    result = pfplan("validate", tmp_path / "simulated.json", tmp_path / "measured.json", "--json")
    assert result.code == 0, result.err
    c = TraceComparison.model_validate(json.loads(result.out))
    # 2 ranks; step 0 (warm-up, whole image) one unit per stage; step 1 two patches per stage
    assert c.compute_units.matched == 2 * (1 + 2)
    assert [s.step for s in c.steps] == [0, 1] and c.steps[0].warmup and not c.steps[1].warmup
    assert {"compute", "communication"} <= set(c.compared_categories)
    # the analytic model prices the scheduler and the VAE decode since issue 13: both traces have them
    assert not {(o.side, o.name) for o in c.one_sided if o.kind == "category"} & {("measured", "scheduler"),
                                                                                  ("measured", "vae")}
    assert not [o for o in c.one_sided if o.kind != "category"]
    measured = load_trace(tmp_path / "measured.json")
    assert c.latency.measured_s <= measured.metadata.latency_s
    assert c.latency.measured_s > 0 and c.latency.simulated_s > 0 and c.compute_units.median_ratio > 0


def test_embed_and_final_timed_apart_on_one_side_are_added_to_its_compute():
    """The runtime's unpipelined forward is one compute event from embedding to final layer."""
    sim = [(0, "embed", 0, 100, {"step": 0, "stage": 0}), (0, "compute", 100, 900, {"step": 0, "stage": 0}),
           (0, "final", 900, 1000, {"step": 0, "stage": 0})]
    meas = [(0, "compute", 0, 1500, {"step": 0, "stage": 0}), (0, "scheduler", 1500, 1600, {"step": 0, "stage": 0})]
    c = compare(trace("simulated", sim), trace("measured", meas))
    assert c.compared_categories == ["compute"]
    assert [(row.category, row.simulated_s * 1e6, row.measured_s * 1e6) for row in c.categories] == [
        ("compute", pytest.approx(1000), pytest.approx(1500))]
    assert c.compute_units.median_ratio == pytest.approx(1.5)
    assert [(o.side, o.kind, o.name) for o in c.one_sided] == [
        ("simulated", "folded", "embed"), ("simulated", "folded", "final"), ("measured", "category", "scheduler")]
    assert c.latency.error_pct == pytest.approx(50)


def test_max_error_gates_with_exit_1(pfplan, tmp_path):
    sim, meas = tmp_path / "sim.json", tmp_path / "meas.json"
    write_trace(sim, trace("simulated", SIMULATED))
    write_trace(meas, trace("measured", MEASURED))
    above = pfplan("validate", sim, meas, "--max-error", "50")
    assert above.code == 1 and "+69.1% exceeds --max-error 50%" in above.err
    assert "End to end" in above.out
    within = pfplan("validate", sim, meas, "--max-error", "70", "--json")
    assert within.code == 0
    bad = pfplan("validate", sim, meas, "--max-error", "-1")
    assert bad.code == 2
