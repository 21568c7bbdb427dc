"""What pfrun refuses, and that the planner can ask without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from profiles.catalog.models import load_model
from simulator.runnable import RUNNABLE_AXES, unrunnable_reason
from tests.conftest import ROOT

from .helpers import plan


@pytest.mark.parametrize("degrees, px, patches", [({"pipefusion": 2, "ulysses": 2}, 144, 2),
                                                  ({"ring": 2, "ulysses": 2}, 144, 1)])
def test_shapes_pfrun_cannot_split_are_refused_by_name(degrees, px, patches):
    """Every axis and every combination the search enumerates runs now (issue 11), 1-row patches
    split by tokens included; what is left is a patch or an image whose tokens do not divide
    into equal shares (45 tokens of a 5-row patch of a 9×9 grid; 81 image tokens over 4 ranks)."""
    reason = unrunnable_reason(plan("pixart-tiny", px=px, degrees=degrees, patches=patches, warmup_steps=1),
                               load_model("pixart-tiny"))
    assert reason and any(axis in reason for axis in degrees)
    assert "equal" in reason and "tokens" in reason
    assert unrunnable_reason(plan("pixart-tiny", degrees=degrees, patches=8 if patches > 1 else 1,
                                  warmup_steps=1), load_model("pixart-tiny")) is None


def test_runnable_plans_pass():
    for degrees in ({}, {"cfg": 2}, {"data": 2}, {"pipefusion": 2}, {"cfg": 2, "pipefusion": 2}):
        p = plan("sd3-tiny", degrees=degrees, patches=2 if degrees.get("pipefusion") else 1, warmup_steps=1)
        assert unrunnable_reason(p, load_model("sd3-tiny")) is None
    assert unrunnable_reason(plan("dit-tiny", degrees={"cfg": 2, "ulysses": 2}), load_model("dit-tiny")) is None
    assert set(RUNNABLE_AXES) == {"data", "cfg", "pipefusion", "ulysses", "ring", "tensor", "distrifusion"}


def test_zero_warmup_is_refused_with_the_reason():
    cold = unrunnable_reason(plan("dit-tiny", degrees={"pipefusion": 2}, patches=2), load_model("dit-tiny"))
    assert "warm-up" in cold
    assert unrunnable_reason(plan("hunyuan-tiny", degrees={"pipefusion": 2}, patches=2, warmup_steps=1),
                             load_model("hunyuan-tiny")) is None


def test_capabilities_import_no_torch():
    code = "import sys, simulator.runnable; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_capability_a_family_lacks_is_refused_by_name():
    """No shipped family lacks one now (issue 11), so a stand-in family declares one: the check a
    new family's spec relies on until its processors are written still refuses, in one line."""
    from types import SimpleNamespace

    from simulator.strategies import STRATEGIES

    ring = next(s for s in STRATEGIES if s.axis == "ring")
    spec = SimpleNamespace(runtime_lacks={ring.runtime_needs: "its adapter has no sequence-parallel processor yet"})
    model = SimpleNamespace(arch=SimpleNamespace(spec=spec, attention="self"), family="toy", name="toy-tiny")
    reason = ring.runtime_limits(2, None, model)
    assert reason == ("degrees.ring: Ring attention on toy (toy-tiny) is not executed: "
                      "its adapter has no sequence-parallel processor yet")
    assert ring.runtime_limits(1, None, model) is None
