"""Every registered strategy is a complete unit, and a new one flows through the plan and the space.

The walk checks what each strategy must state (rules, sharding, collectives, memory terms, a
placement preference, a runtime module or a reason it has none) and that the statements are
consistent with each other; the toy strategy shows that adding an axis takes one class.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import Field, ValidationError, create_model

from profiles.costs.cost_model import LayerShape
from profiles.catalog.models import ModelPreset, load_model
from planner.space import degree_options
from simulator.collectives import ALGORITHMS
from simulator.plan import Degrees, ParallelPlan, degrees_model, violations
from simulator.rank_groups import AXES
from simulator.runnable import RUNNABLE_AXES, unrunnable_reason
from simulator.strategies import STRATEGIES, registry
from simulator.strategies.base import ATTENTION_KINDS, CollectiveSpec, MemoryContext, MemoryTerms, PassWork, \
    Strategy, TrafficContext

PIXART = load_model("pixart-alpha")
ALL = [STRATEGIES.get(name) for name in STRATEGIES.names()]
SHAPE = LayerShape("pixart_block", 4096, 4096, 2)
WORK = PassWork(query_tokens=4096, kv_tokens=4096, batch=2, layers=7, hidden=1152, dtype_bytes=2, warmup=False,
                out_bytes=4096 * 32 * 2, attention_share=0.3)
MEMORY = MemoryContext(batch=2, image_tokens=4096, query_tokens=2048, hidden=1152, layers=7, patches=4,
                       kv_shards=1, dtype_bytes=2)
TRAFFIC = TrafficContext(PIXART, 4096)


def ids(strategies: list[Strategy]) -> list[str]:
    return [s.name for s in strategies]


def plan(**kw) -> ParallelPlan:
    return ParallelPlan(**{**dict(model="pixart-alpha", height_px=1024, width_px=1024, steps=4), **kw})


def test_the_registry_holds_every_axis_of_the_plan_in_rank_order():
    assert AXES == STRATEGIES.axes() == ("data", "cfg", "pipefusion", "distrifusion", "ring", "ulysses", "tensor")
    assert tuple(Degrees.model_fields) == AXES
    for s in STRATEGIES:
        field = Degrees.model_fields[s.axis]
        assert field.description == s.description and field.default == 1
    assert [s.name for s in ALL if s.axis is None] == ["serial"]
    assert STRATEGIES.pipeline.axis == "pipefusion"


@pytest.mark.parametrize("strategy", ALL, ids=ids(ALL))
def test_degree_one_is_disabled(strategy: Strategy):
    """Degree 1 breaks no rule, shards nothing and sends nothing."""
    assert strategy.rules(1, PIXART, 64) == []
    assert strategy.shard(SHAPE, 1) == SHAPE
    assert strategy.collectives(WORK, 1, WORK.query_tokens) == []


@pytest.mark.parametrize("strategy", ALL, ids=ids(ALL))
def test_sharding_never_grows_a_rank_s_work(strategy: Strategy):
    local = strategy.shard(SHAPE, 2)
    assert local.query_tokens <= SHAPE.query_tokens and local.kv_tokens == SHAPE.kv_tokens
    assert local.tensor_shard >= SHAPE.tensor_shard and local.batch == SHAPE.batch
    if strategy.splits_sequence:
        assert local.query_tokens == SHAPE.query_tokens // 2


@pytest.mark.parametrize("strategy", ALL, ids=ids(ALL))
def test_collectives_run_on_the_strategy_s_own_axis_with_a_known_algorithm(strategy: Strategy):
    specs = strategy.collectives(WORK, 2, strategy.shard(SHAPE, 2).query_tokens)
    for spec in specs:
        assert isinstance(spec, CollectiveSpec)
        assert spec.axis == strategy.axis and spec.kind in ALGORITHMS and spec.bytes_per_rank > 0
    if specs:
        assert strategy.role == "stage", "collectives run inside a stage group"


@pytest.mark.parametrize("strategy", ALL, ids=ids(ALL))
def test_memory_terms_and_placement_preference_are_stated(strategy: Strategy):
    terms = strategy.buffers(MEMORY, 2)
    assert isinstance(terms, MemoryTerms) and terms.kv_buffers >= 0 and terms.receive_buffers >= 0
    traffic = strategy.traffic_bytes(2, TRAFFIC)
    assert isinstance(traffic, float) and traffic >= 0
    if strategy.collectives(WORK, 2, strategy.shard(SHAPE, 2).query_tokens):
        assert traffic > 0, "a strategy that moves bytes must tell the placement"


@pytest.mark.parametrize("strategy", ALL, ids=ids(ALL))
def test_a_runtime_module_or_a_reason_that_runnable_reports(strategy: Strategy):
    assert strategy.runtime_attention <= ATTENTION_KINDS and strategy.runtime_attention
    if strategy.runtime_module is not None:
        assert strategy.runtime_module == f"runtime.strategies.{strategy.name}"
        assert strategy.axis is None or strategy.axis in RUNNABLE_AXES
        return
    assert strategy.not_executable.strip() and "\n" not in strategy.not_executable
    assert strategy.axis not in RUNNABLE_AXES
    p = plan(degrees={strategy.axis: 2}, warmup_steps=1)
    assert violations(p, PIXART) == []
    reason = unrunnable_reason(p, PIXART)
    assert reason and f"{strategy.axis}(2)" in reason and strategy.not_executable in reason


def test_runtime_attention_kinds_are_reported_by_name():
    flux = load_model("flux-dev")
    for s in STRATEGIES:
        if s.runtime_module and flux.arch.attention not in s.runtime_attention:
            reason = unrunnable_reason(plan(model="flux-dev", degrees={s.axis: 2}), flux)
            assert reason and reason.startswith(f"degrees.{s.axis}") and "joint attention" in reason


class Toy(Strategy):
    """A test-local stage strategy: splits heads, at most 4 ways, no runtime."""

    name = "toy"
    axis = "toy"
    rank_order = 65
    title = "Toy"
    description = "A toy axis that splits the heads."
    shards_heads = True
    not_executable = "a toy"
    limit: ClassVar[int] = 4

    def rules(self, degree: int, model: ModelPreset, rows: int) -> list[str]:
        return [f"degrees.toy: toy({degree}) exceeds {self.limit} toys"] if degree > self.limit else []

    def shard(self, shape: LayerShape, degree: int) -> LayerShape:
        return shape

    def collectives(self, work: PassWork, degree: int, local_query_tokens: int) -> list[CollectiveSpec]:
        return []

    def buffers(self, ctx: MemoryContext, degree: int) -> MemoryTerms:
        return MemoryTerms()

    def traffic_bytes(self, degree: int, ctx: TrafficContext) -> float:
        return 0.0


@pytest.fixture
def toy():
    reg = registry()
    reg.register(Toy)
    degrees = degrees_model(reg)
    plan_type = create_model("ToyPlan", __base__=ParallelPlan, degrees=(degrees, Field(default_factory=degrees)))
    return reg, degrees, plan_type


def test_a_new_strategy_becomes_a_degrees_field_in_its_rank_position(toy):
    reg, degrees, _ = toy
    assert tuple(degrees.model_fields) == ("data", "cfg", "pipefusion", "distrifusion", "ring", "ulysses", "toy",
                                           "tensor")
    schema = degrees.model_json_schema()["properties"]["toy"]
    assert schema == {"default": 1, "description": "A toy axis that splits the heads.", "minimum": 1,
                      "title": "Toy", "type": "integer"}
    assert degrees(toy=2, ulysses=2).label() == "ulysses2×toy2"
    with pytest.raises(ValidationError):
        degrees(toy=0)
    assert "toy" not in Degrees.model_fields  # the shared registry is untouched


def test_a_new_strategy_s_rules_reach_violations(toy):
    reg, _, plan_type = toy
    model_kw = dict(model="pixart-alpha", height_px=1024, width_px=1024, steps=4)
    assert violations(plan_type(**model_kw, degrees={"toy": 2}), PIXART, strategies=reg) == []
    assert violations(plan_type(**model_kw, degrees={"toy": 3}), PIXART, strategies=reg) == [
        "degrees.toy: toy(3) does not divide heads(16)"]
    assert violations(plan_type(**model_kw, degrees={"toy": 8}), PIXART, strategies=reg) == [
        "degrees.toy: toy(8) exceeds 4 toys"]
    assert violations(plan_type(**model_kw, degrees={"toy": 4, "ulysses": 8}), PIXART, strategies=reg) == [
        "degrees: ulysses(8) × toy(4) does not divide heads(16)"]


def test_a_new_strategy_joins_the_search_space(toy):
    reg, degrees, _ = toy
    found = {d.label() for d in degree_options(4, PIXART, 64, strategies=reg, degrees_type=degrees)}
    assert {"toy4", "ulysses2×toy2", "cfg2×toy2"} <= found
    assert "toy2×tensor2" not in found  # tensor parallel is exclusive: the generic rule covers a new axis too
    assert "ulysses8×toy2" in {d.label() for d in degree_options(16, PIXART, 64, strategies=reg,
                                                                    degrees_type=degrees)}
    assert "ulysses8×toy4" not in {d.label() for d in degree_options(32, PIXART, 64, strategies=reg,
                                                                        degrees_type=degrees)}  # 32 ∤ 16 heads
    without = {d.label() for d in degree_options(4, PIXART, 64)}
    assert not any("toy" in label for label in without)
