"""The pfplan / pfrun shells: help, machine-readable output, one-line errors."""

from __future__ import annotations

import json

from tests.conftest import run_subprocess


def test_help_of_both_commands_exits_0():
    for module in ("planner", "runtime"):
        result = run_subprocess(module, "--help", timeout=120)
        assert result.code == 0, result.err
        assert "Usage" in result.out


def test_models_lists_the_shipped_presets(pfplan):
    result = pfplan("models", "--json")
    assert result.code == 0
    names = [m["name"] for m in json.loads(result.out)]
    assert len(names) == 22 and "flux-dev" in names and "hunyuan-tiny" in names and "wan2.1-t2v-14b" in names
    table = pfplan("models")
    assert table.code == 0 and "pixart-alpha" in table.out


def test_models_show(pfplan):
    result = pfplan("models", "show", "flux-dev", "--json", "--resolution", "2048")
    info = json.loads(result.out)
    assert info["blocks"] == {"flux_double_block": 19, "flux_single_block": 38}
    assert info["image_tokens"] == 16384


def test_topology_show_pcie8_matrix(pfplan):
    result = pfplan("topology", "show", "pcie8")
    assert result.code == 0
    rows = [line.split() for line in result.out.splitlines() if line.startswith("GPU") and "node0/" in line]
    assert len(rows) == 8
    assert rows[0][1:9] == ["X", "PIX", "PHB", "PHB", "SYS", "SYS", "SYS", "SYS"]
    data = json.loads(pfplan("topology", "show", "pcie8.yaml", "--json").out)
    assert data["matrix"][2][3] == "PIX" and len(data["devices"]) == 8


def test_unknown_topology_is_one_line_with_a_suggestion(pfplan):
    result = pfplan("topology", "show", "pcie9")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "did you mean 'pcie8'" in result.err
