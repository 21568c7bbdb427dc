"""The runtime strategies: one module per axis, found by name, each providing its kind's protocol."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

import runtime.strategies as registry
from profiles.catalog.models import load_model
from runtime.dist_context import DistContext
from runtime.run import job_for
from runtime.strategies.base import GuidanceStrategy, LoopStrategy, ReplicaStrategy, RuntimeStrategy
from runtime.strategies.cfg import BatchGuidance, ParallelGuidance, Unguided
from simulator.runnable import RUNNABLE_AXES

from .helpers import plan

KINDS = (ReplicaStrategy, GuidanceStrategy, LoopStrategy)


@pytest.mark.parametrize("axis", RUNNABLE_AXES + (registry.DEFAULT_LOOP,))
def test_every_runnable_axis_resolves_to_its_module_with_one_kind_of_protocol(axis):
    found = registry.strategy(axis)
    assert isinstance(found, RuntimeStrategy) and found.axis == axis
    assert type(found).__module__ == f"runtime.strategies.{axis}"
    assert sum(isinstance(found, kind) for kind in KINDS) == 1


def test_every_module_of_the_package_is_a_registered_strategy():
    files = {p.stem for p in Path(registry.__file__).parent.glob("*.py")} - {"__init__", "base"}
    assert set(registry.axes()) == files
    assert set(RUNNABLE_AXES) <= files


@pytest.mark.parametrize("axis", ["usp", "tensr", ""])
def test_an_unknown_axis_fails_with_one_line_naming_the_valid_ones(axis):
    with pytest.raises(registry.UnknownStrategy) as info:
        registry.strategy(axis)
    message = str(info.value)
    assert "\n" not in message and repr(axis) in message
    assert message.endswith("runtime strategies: " + ", ".join(registry.axes()))


@pytest.mark.parametrize("fields, loop", [
    ({}, "serial"),
    ({"degrees": {"cfg": 2}}, "serial"),
    ({"degrees": {"data": 2}}, "serial"),
    ({"degrees": {"pipefusion": 2}, "patches": 2, "warmup_steps": 1}, "pipefusion"),
    ({"patches": 4, "warmup_steps": 1}, "pipefusion"),  # PipeFusion's stale path on one rank
    ({"degrees": {"cfg": 2, "ulysses": 2}}, "ulysses"),
    ({"degrees": {"ulysses": 2, "ring": 2}}, "ring"),  # USP: one band loop, both exchanges (issue 11)
    ({"degrees": {"pipefusion": 2, "ulysses": 2}, "patches": 2, "warmup_steps": 1}, "pipefusion"),  # takes the hook
])
def test_a_plan_dispatches_to_the_loop_of_its_active_axis(fields, loop):
    chosen = registry.for_plan(plan("pixart-tiny", **fields))
    assert chosen.loop.axis == loop
    assert (chosen.replicas.axis, chosen.guidance.axis) == ("data", "cfg")


def test_a_plan_needing_two_loops_is_refused_naming_both():
    """Sequence-parallel axes compose with PipeFusion since issue 11; two other loops do not."""
    with pytest.raises(registry.UnknownStrategy, match="distrifusion and tensor"):
        registry.for_plan(plan("pixart-tiny", degrees={"distrifusion": 2, "tensor": 2}))
    with pytest.raises(registry.UnknownStrategy, match="distrifusion and ulysses"):
        registry.for_plan(plan("pixart-tiny", degrees={"distrifusion": 2, "ulysses": 2}))


def test_guidance_follows_the_model_and_the_cfg_degree():
    cfg = registry.strategy("cfg")
    coord = {"cfg": 1}
    dist = DistContext.single({}, 1.0, None)
    flux, sd3 = load_model("flux-tiny"), load_model("sd3-tiny")
    assert cfg.guidance(flux, plan("flux-tiny"), {"cfg": 0}, dist, 4.5) == Unguided()
    assert cfg.guidance(sd3, plan("sd3-tiny"), {"cfg": 0}, dist, 4.5) == BatchGuidance(4.5)
    mine = cfg.guidance(sd3, plan("sd3-tiny", degrees={"cfg": 2}), coord, dist, 4.5)
    assert isinstance(mine, ParallelGuidance)
    assert mine.branches == ("cond",) and not mine.writes_output
    assert BatchGuidance(4.5).branches == ("uncond", "cond") and Unguided().branches == ("cond",)


def test_replicas_choose_seed_and_prompt_by_their_data_coordinate():
    data = registry.strategy("data")
    assert data.replica({"data": 3}) == 3 and data.seed(5, 3) == 8
    assert data.pick(("a", "b"), 3) == "b" and data.pick((), 3) is None


def test_a_job_parses_its_plan_once_and_pickles_only_its_fields():
    job = job_for(plan("dit-tiny"), load_model("dit-tiny"))
    assert job.plan is job.plan and job.preset is job.preset
    assert job.plan.model == "dit-tiny" and job.preset.name == "dit-tiny"
    state = job.__getstate__()
    assert set(state) == {f.name for f in dataclasses.fields(job)}
    back = pickle.loads(pickle.dumps(job))
    assert back == job and back.plan == job.plan
    moved = dataclasses.replace(job, device="cpu:0")
    assert moved.device == "cpu:0" and moved.plan == job.plan
