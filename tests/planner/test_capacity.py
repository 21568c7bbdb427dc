"""Capacity planning arithmetic (the worked example of planner/capacity.py) and the import rule."""

from __future__ import annotations

import subprocess
import sys

import pytest

from planner.capacity import capacity_options
from planner.search import Candidate, SearchResult
from simulator.plan import Degrees, ParallelPlan, Prediction
from tests.conftest import ROOT


def cand(degrees: Degrees, latency_s: float, simulated: bool = True) -> Candidate:
    plan = ParallelPlan(model="pixart-alpha", height_px=1024, width_px=1024, steps=20, degrees=degrees)
    return Candidate(plan, "greedy", latency_s, 1, 2, "d", None,
                     Prediction(latency_s=latency_s) if simulated else None)


def test_worked_example_and_slo():
    result = SearchResult([cand(Degrees(pipefusion=8), 1.0), cand(Degrees(pipefusion=4), 1.5),
                           cand(Degrees(data=2, pipefusion=3), 2.5), cand(Degrees(), 4.0),
                           cand(Degrees(pipefusion=2), 0.1, simulated=False)], [], 4.0)
    options = capacity_options(result, rate_images_per_s=2.0, slo_s=None, box_devices=8)
    four = next(o for o in options if o.devices_per_replica == 4)
    assert (four.replicas, four.total_devices, four.boxes) == (3, 12, 2)
    assert four.utilisation == pytest.approx(1.0)
    serial = next(o for o in options if o.devices_per_replica == 1)
    assert serial.replicas == 8 and serial.boxes == 1
    data2 = next(o for o in options if o.label == "data2×pipefusion3")
    assert data2.replica_throughput == pytest.approx(0.8) and data2.replicas == 3
    assert all(o.devices_per_replica != 2 for o in options)  # estimate-only plans are not sized
    assert [o.total_devices for o in options] == sorted(o.total_devices for o in options)
    fast = capacity_options(result, rate_images_per_s=2.0, slo_s=1.2, box_devices=8)
    assert [o.label for o in fast] == ["pipefusion8"] and fast[0].replicas == 2


def test_planner_stays_torch_free():
    code = ("import sys, planner.cli, planner.search, planner.report, planner.capacity; "
            "bad = [m for m in ('torch', 'diffusers') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
