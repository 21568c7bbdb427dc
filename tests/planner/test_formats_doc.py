"""docs/formats.md: every fenced example parses as the format its tag names, and says true things."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from profiles.catalog.gpus import GpuCatalog, catalog
from profiles.loading import parse_document
from profiles.catalog.models import ModelPreset, load_model
from profiles.topology.format import Topology
from profiles.topology.graph import ClusterGraph, load_cluster
from profiles.topology.smi_import import parse_topo_text, topology_from_matrix
from simulator.plan import ParallelPlan, validate
from simulator.trace import Trace
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "formats.md").read_text()
BLOCKS = re.findall(r"^```(\w+) ([\w-]+)\n(.*?)^```$", DOC, flags=re.M | re.S)
EXAMPLES = {tag: (lang, body) for lang, tag, body in BLOCKS}


def example(tag: str):
    lang, body = EXAMPLES[tag]
    data = json.loads(body) if lang == "json" else yaml.safe_load(body)
    schema = json.loads((ROOT / "docs" / "schemas" / f"{tag}.schema.json").read_text())
    jsonschema.validate(data, schema)
    return data


def test_every_format_has_one_tagged_example():
    assert sorted(tag for _, tag, _ in BLOCKS) == sorted(
        ["topology", "nvidia-smi-topo", "measured-runs", "plan", "model-preset", "gpu-catalog", "trace"])
    untagged = re.findall(r"^```(yaml|json)\s*$", DOC, flags=re.M)
    assert not untagged, "every yaml/json block in docs/formats.md needs a format tag so it is tested"


def test_topology_example_routes_as_the_doc_says():
    cluster = ClusterGraph(parse_document(Topology, example("topology"), file="formats.md"))
    assert len(cluster.devices) == 8
    for a, b, cls in [("node0/gpu0", "node0/gpu1", "NVL"), ("node0/gpu1", "node0/gpu2", "SYS"),
                      ("node0/gpu2", "node0/gpu3", "NVL"), ("node0/gpu0", "node1/gpu0", "NET")]:
        assert cluster.route(a, b).route_class == cls


def test_nvidia_smi_example_imports():
    _, text = EXAMPLES["nvidia-smi-topo"]
    topology = topology_from_matrix(parse_topo_text(text), gpu="a100-pcie", name="doc")
    assert ClusterGraph(topology).route_matrix() == [
        ["X", "PIX", "SYS", "SYS"], ["PIX", "X", "SYS", "SYS"], ["SYS", "SYS", "X", "PHB"], ["SYS", "SYS", "PHB", "X"]]


def test_measured_runs_example_names_valid_plans_on_a100_pcie4():
    from planner.topology_calibration import run_plan
    from profiles.catalog.measured_runs import MeasuredRuns

    runs = parse_document(MeasuredRuns, example("measured-runs"))
    model, cluster = load_model(runs.model), load_cluster("a100-pcie4")
    for i, run in enumerate(runs.runs):
        run_plan(run, i, model, cluster, "formats.md")


def test_plan_example_is_valid_for_its_model_and_topology():
    plan = parse_document(ParallelPlan, example("plan"))
    assert plan.prediction is None  # the doc shows no made-up prediction
    validate(plan, load_model(plan.model), load_cluster(plan.topology))


def test_model_preset_example_is_the_shipped_one():
    assert parse_document(ModelPreset, example("model-preset")) == load_model("pixart-tiny")


def test_gpu_catalog_example_matches_the_shipped_catalog():
    doc = parse_document(GpuCatalog, example("gpu-catalog"))
    for name, spec in doc.gpus.items():
        assert spec == catalog().gpus[name], name


def test_trace_example_parses():
    trace = parse_document(Trace, example("trace"))
    assert trace.ranks() == [0, 1] and trace.metadata.source == "simulated"


@pytest.mark.parametrize("tag", ["topology", "plan", "model-preset", "gpu-catalog", "trace"])
def test_examples_satisfy_the_exported_schemas(tag):
    example(tag)
