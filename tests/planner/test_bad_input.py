"""Bad input through the real CLI: exit code 2, one line on stderr naming file and field, no traceback.

Each case writes its files into a temporary folder, runs ``pfplan`` and checks what a user
would see. The topology cases start from the shipped ``pcie8.yaml`` and break one thing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from profiles.topology.format import TOPOLOGIES_DIR
from tests.conftest import CliResult, run_subprocess

PCIE8 = (TOPOLOGIES_DIR / "pcie8.yaml").read_text()
SAMPLES = Path(__file__).parents[1] / "profiles" / "topo_samples"


def broken(old: str, new: str, count: int = -1) -> str:
    """pcie8.yaml with one edit (which must apply)."""
    assert old in PCIE8, old
    return PCIE8.replace(old, new, count)


def plan_json(model: str = "pixart-alpha", **fields: object) -> str:
    return json.dumps({"schema_version": 1, "model": model, "height_px": 1024, "width_px": 1024, "steps": 20,
                       **fields})


def assert_one_line_error(result: CliResult, *needles: str) -> None:
    assert result.code == 2, (result.code, result.out, result.err)
    assert "Traceback" not in result.err and "Traceback" not in result.out
    lines = result.err.splitlines()
    assert len(lines) == 1 and result.err.endswith("\n"), result.err
    assert lines[0].startswith("pfplan: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# (files to write, pfplan arguments, what the one line must say: file name, field, expectation)
TOPOLOGY_CASES = {
    "yaml syntax error": (broken("    sockets:\n", "    sockets: [\n"),
                          [f"topo.yaml: invalid YAML at line {PCIE8.splitlines().index('    sockets:') + 2} column 7"]),
    "unknown key": (broken("    gpu: l40\n", "    gpu: l40\n    sockest: []\n"),
                    ["topo.yaml: nodes[0].sockest: unknown field", "did you mean 'sockets'"]),
    "wrong type": (broken("device_link: {bandwidth_gb_s: 22", "device_link: {bandwidth_gb_s: fast"),
                   ["topo.yaml: nodes[0].device_link.bandwidth_gb_s:", "valid number", "got 'fast'"]),
    "negative bandwidth": (broken("socket_link: {bandwidth_gb_s: 20", "socket_link: {bandwidth_gb_s: -20"),
                           ["topo.yaml: nodes[0].socket_link.bandwidth_gb_s:", "greater than 0", "got -20"]),
    "zero bandwidth": (broken("uplink: {bandwidth_gb_s: 22", "uplink: {bandwidth_gb_s: 0", 1),
                       ["topo.yaml: nodes[0].sockets[0].switches[0].uplink.bandwidth_gb_s:", "got 0"]),
    "negative latency": (broken("latency_us: 2.0", "latency_us: -2.0"),
                         ["topo.yaml: nodes[0].socket_link.latency_us:", "greater than or equal to 0"]),
    "dangling NVLink": (PCIE8 + "    nvlink:\n      - {gpus: [gpu0, gpu9], link: {bandwidth_gb_s: 100, latency_us: 1}}\n",
                        ["topo.yaml: nodes[0].nvlink[0].gpus:", "'gpu9', which is not a GPU of this node"]),
    "disconnected (2 nodes, no network)": (broken("  - name: node0\n", "  - name: node\n    count: 2\n"),
                                           ["topo.yaml: nodes: the topology is disconnected",
                                            "need a network section"]),
    "unknown GPU name": (broken("gpu: l40", "gpu: l40x"),
                         ["topo.yaml: nodes[0].gpu: unknown GPU 'l40x'", "did you mean 'l40'"]),
    "name used twice": (broken("name: sw1,", "name: sw0,"),
                        ["topo.yaml: nodes[0].sockets[0].switches[1]: name 'sw0' is used twice"]),
    "two sockets, no socket link": (broken("    socket_link: {bandwidth_gb_s: 20, latency_us: 2.0}\n", ""),
                                    ["topo.yaml: nodes[0].socket_link: a node with several sockets needs"]),
    "future schema version": (broken("schema_version: 1", "schema_version: 2"),
                              ["topo.yaml: schema_version: unsupported version", "got 2"]),
    "empty file": ("", ["topo.yaml: the file is empty"]),
    "a list, not a mapping": ("- 1\n", ["topo.yaml: expected a mapping of fields at the top level, got a list"]),
}


@pytest.mark.parametrize("case", list(TOPOLOGY_CASES))
def test_bad_topology_file(case, pfplan, tmp_path):
    text, needles = TOPOLOGY_CASES[case]
    path = tmp_path / "topo.yaml"
    path.write_text(text)
    assert_one_line_error(pfplan("topology", "show", path), *needles)


PLAN_CASES = {
    "malformed plan JSON": ('{"model": "pixart-alpha", "height_px": 1024,\n', ["plan.json: invalid JSON at line 2"]),
    "wrong type in a plan": (plan_json(degrees={"pipefusion": "two"}),
                             ["plan.json: degrees.pipefusion:", "valid integer", "got 'two'"]),
    "unknown plan field": (plan_json(patchs=4), ["plan.json: patchs: unknown field", "did you mean 'patches'"]),
    "unknown model in a plan": (plan_json("pixart-alfa"),
                                ["plan.json: model: unknown model 'pixart-alfa'", "did you mean 'pixart-alpha'"]),
    "unknown topology in a plan": (plan_json(topology="pcie9"),
                                   ["plan.json: topology: unknown topology 'pcie9'", "did you mean 'pcie8'"]),
    "ulysses does not divide heads": (plan_json(degrees={"ulysses": 3}),
                                      ["plan.json: degrees.ulysses: ulysses(3) does not divide heads(16)"]),
    "stage split sum": (plan_json(degrees={"pipefusion": 2}, stage_split=[10, 10]),
                        ["plan.json: stage_split: sums to 20, the model has 28 blocks"]),
    "stage split length": (plan_json(degrees={"pipefusion": 2}, stage_split=[28]),
                           ["plan.json: stage_split: 1 stages given for pipefusion(2)"]),
    "empty stage": (plan_json(degrees={"pipefusion": 2}, stage_split=[28, 0]),
                    ["plan.json: stage_split:", "at least one block"]),
    "patches exceed rows": (plan_json(patches=65), ["plan.json: patches: 65 patches do not fit 64 latent token rows"]),
    "warm-up exceeds steps": (plan_json(warmup_steps=21),
                              ["plan.json: warmup_steps: 21 warm-up steps exceed steps(20)"]),
    "cfg on flux": (plan_json("flux-dev", degrees={"cfg": 2}),
                    ["plan.json: degrees.cfg: cfg(2) needs a model that uses classifier-free guidance"]),
    "resolution not a whole number of tokens": (plan_json(height_px=1000),
                                                ["plan.json: height_px/width_px:", "multiple of 16"]),
    "placement on a missing device": (plan_json(degrees={"pipefusion": 2}, topology="pcie8",
                                                placement=["node0/gpu0", "node0/gpu9"]),
                                      ["plan.json: placement: unknown devices node0/gpu9"]),
    "placement repeats a device": (plan_json(degrees={"pipefusion": 2}, placement=["node0/gpu0", "node0/gpu0"]),
                                   ["plan.json: placement: devices used by several ranks: node0/gpu0"]),
    "degrees exceed devices": (plan_json(degrees={"pipefusion": 8}, topology="a100-pcie4"),
                               ["plan.json: degrees: 8 ranks (pipefusion8) but the topology has 4 devices"]),
    "tensor with pipefusion": (plan_json(degrees={"tensor": 2, "pipefusion": 2}),
                               ["plan.json: degrees.tensor: tensor combines only with cfg and data"]),
}


@pytest.mark.parametrize("case", list(PLAN_CASES))
def test_bad_plan_file(case, pfplan, tmp_path):
    text, needles = PLAN_CASES[case]
    path = tmp_path / "plan.json"
    path.write_text(text)
    assert_one_line_error(pfplan("plan", "validate", path), *needles)


def test_all_plan_violations_come_in_one_line(pfplan, tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(plan_json(degrees={"ulysses": 3}, warmup_steps=21, patches=65))
    assert_one_line_error(pfplan("plan", "validate", path), "ulysses(3)", "warmup_steps:", "patches:")


def test_missing_files(pfplan, tmp_path):
    assert_one_line_error(pfplan("plan", "validate", tmp_path / "nope.json"), "nope.json: file not found")
    assert_one_line_error(pfplan("models", "show", tmp_path / "nope.json"), "nope.json: file not found")
    assert_one_line_error(pfplan("topology", "import", tmp_path / "topo.txt", "-o", tmp_path / "o.yaml",
                                 "--gpu", "l40"), "topo.txt: file not found")


def test_unknown_model_name_suggests_the_closest(pfplan):
    assert_one_line_error(pfplan("models", "show", "pixart-alfa"),
                          "model: unknown model 'pixart-alfa'", "did you mean 'pixart-alpha'")


@pytest.mark.parametrize("change, needles", [
    ({"num_layers": "x"}, ["config.json: config.num_layers: expected a positive integer, got 'x'"]),
    ({"num_attention_heads": -4}, ["config.json: config.num_attention_heads: expected a positive integer"]),
    ({"attention_head_dim": None}, ["config.json: config.attention_head_dim: the pixart config has no"]),
    ({"_class_name": "FooTransformer"}, ["config.json: _class_name: unsupported diffusers class 'FooTransformer'"]),
])
def test_bad_diffusers_config(change, needles, pfplan, tmp_path):
    from profiles.catalog.models import load_model

    config = {"_class_name": "PixArtTransformer2DModel", **load_model("pixart-alpha").config, **change}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    assert_one_line_error(pfplan("models", "show", path), *needles)
    out = tmp_path / "preset.yaml"
    assert_one_line_error(pfplan("models", "import", path, "-o", out), *needles)
    assert not out.exists()


def test_usage_errors_are_one_line(pfplan):
    assert_one_line_error(pfplan("topology", "show", "pcie8", "--bogus"), "No such option: --bogus")
    assert_one_line_error(pfplan("plan", "validate"), "Missing argument")
    assert_one_line_error(pfplan("models", "show", "pixart-alpha", "--resolution", "big"), "--resolution")


def test_failed_topology_import_leaves_no_file_and_keeps_the_old_one(pfplan, tmp_path):
    bad = tmp_path / "topo.txt"
    bad.write_text((SAMPLES / "pcie8-box.txt").read_text().replace("GPU3\tPXB\tPXB\tPIX", "GPU3\tPXB\tPXB\tPXB"))
    out = tmp_path / "mine.yaml"
    assert_one_line_error(pfplan("topology", "import", bad, "-o", out, "--gpu", "l40"),
                          "topo.txt: line 5: GPU2-GPU3 is PIX but GPU3-GPU2 is PXB")
    assert list(tmp_path.iterdir()) == [bad]
    out.write_text("old\n")
    assert_one_line_error(pfplan("topology", "import", SAMPLES / "pcie8-box.txt", "-o", out, "--gpu", "l4"),
                          "--gpu: unknown GPU 'l4'", "did you mean 'l40'")
    assert out.read_text() == "old\n" and sorted(tmp_path.iterdir()) == sorted([out, bad])


def test_real_processes_print_one_line_and_exit_2(tmp_path):
    topo = tmp_path / "topo.yaml"
    topo.write_text(broken("gpu: l40", "gpu: l40x"))
    result = run_subprocess("planner", "topology", "show", topo, timeout=120)
    assert_one_line_error(result, "topo.yaml: nodes[0].gpu: unknown GPU 'l40x'")
    plan = tmp_path / "plan.json"
    plan.write_text(plan_json("flux-dev", degrees={"cfg": 2}))
    result = run_subprocess("planner", "plan", "validate", plan, timeout=120)
    assert_one_line_error(result, "plan.json: degrees.cfg:")
    debug = run_subprocess("planner", "plan", "validate", plan, "--debug", timeout=120)
    assert debug.code != 0 and "Traceback" in debug.err and "PlanError" in debug.err


def test_pfrun_usage_errors_are_one_line_too(pfrun):
    result = pfrun("--bogus")
    lines = result.err.splitlines()
    assert result.code == 2 and len(lines) == 1
    assert lines[0].startswith("pfrun: error: No such option: --bogus") and lines[0].endswith("(see pfrun --help)")


def test_plan_validate_finds_the_plans_topology_where_pfrun_does(tmp_path, pfplan, monkeypatch):
    """A relative topology is looked up next to the plan file first (simulator.plan.plan_cluster, shared)."""
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "mine.yaml").write_text(PCIE8.replace("name: pcie8", "name: mine"))
    plan = tmp_path / "box" / "plan.json"
    plan.write_text(plan_json("pixart-alpha", degrees={"cfg": 2, "data": 4}, topology="mine.yaml"))
    monkeypatch.chdir(tmp_path)
    result = pfplan("plan", "validate", plan)
    assert result.code == 0 and "valid" in result.out, result.err
    # 8 ranks need all 8 GPUs of mine.yaml; on a 4-GPU override the same plan breaks a rule
    assert_one_line_error(pfplan("plan", "validate", plan, "--topology", "a100-pcie4"), "plan.json")
