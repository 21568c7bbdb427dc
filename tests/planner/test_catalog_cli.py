"""``pfplan gpus`` and ``pfplan topology list``: machine-readable output a script can rely on."""

from __future__ import annotations

import json

from profiles.catalog.gpus import catalog
from profiles.topology.format import shipped_topologies

GPUS = ["a100-sxm", "a100-pcie", "h100-sxm", "h200", "l40", "l40s", "l20", "rtx4090", "t4", "cpu"]


def test_gpus_json_is_the_catalog_with_sources(pfplan):
    result = pfplan("gpus", "--json")
    assert result.code == 0 and result.err == ""
    data = json.loads(result.out)
    assert sorted(data) == sorted(GPUS)
    for name, spec in data.items():
        assert spec == catalog().gpus[name].model_dump()
        assert spec["peak_tflops"] > 0 and spec["memory_gb"] > 0 and spec["memory_bandwidth_gb_s"] > 0
        assert spec["source"].strip(), f"{name} has no source for its figures"
    assert data["h100-sxm"]["peak_tflops"] == 989 and data["l40"]["memory_gb"] == 48


def test_gpus_table_lists_every_gpu(pfplan):
    result = pfplan("gpus")
    assert result.code == 0
    for name in GPUS:
        assert f" {name} " in result.out


def test_topology_list_json(pfplan):
    result = pfplan("topology", "list", "--json")
    assert result.code == 0 and result.err == ""
    rows = {row["name"]: row for row in json.loads(result.out)}
    assert sorted(rows) == shipped_topologies()
    assert {k: rows["pcie8"][k] for k in ("devices", "hosts", "gpu")} == {"devices": 8, "hosts": 1, "gpu": ["l40"]}
    assert {k: rows["l40-2node"][k] for k in ("devices", "hosts")} == {"devices": 16, "hosts": 2}
    assert rows["cpu2"]["gpu"] == ["cpu"] and rows["t4x4"]["devices"] == 4
    assert all(row["description"] for row in rows.values())


def test_topology_list_table(pfplan):
    result = pfplan("topology", "list")
    assert result.code == 0
    assert all(name in result.out for name in shipped_topologies())
