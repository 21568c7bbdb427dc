"""The simulator stays light: no torch, diffusers or planner behind ``simulate``."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_simulator_imports_neither_torch_nor_planner():
    code = ("import sys, simulator.engine, simulator.estimate, simulator.memory; "
            "bad = [m for m in ('torch', 'diffusers', 'planner') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
