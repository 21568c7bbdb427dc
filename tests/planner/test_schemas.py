"""The JSON Schemas in docs/schemas/ match the pydantic models, and shipped files satisfy them."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from planner.schemas import export, formats, render
from profiles.catalog.gpus import GPUS_FILE
from profiles.catalog.models import MODELS_DIR
from profiles.topology.format import TOPOLOGIES_DIR
from tests.conftest import ROOT

SCHEMAS = ROOT / "docs" / "schemas"


@pytest.mark.parametrize("stem", list(formats()))
def test_committed_schema_is_current(stem):
    path = SCHEMAS / f"{stem}.schema.json"
    assert path.exists(), f"{path} is missing: run `make schemas` and commit docs/schemas"
    assert path.read_text() == render(formats()[stem]), \
        f"{path} is stale (its pydantic model changed): run `make schemas` and commit docs/schemas"


def test_no_leftover_schemas():
    expected = {f"{stem}.schema.json" for stem in formats()}
    leftovers = sorted(p.name for p in SCHEMAS.glob("*.json") if p.name not in expected)
    assert not leftovers, f"docs/schemas has schemas of no current format: {leftovers}; delete them"


def test_export_writes_what_render_gives(tmp_path):
    written = export(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{s}.schema.json" for s in formats())
    for path in written:
        assert path.read_text() == render(formats()[path.name.removesuffix(".schema.json")])


@pytest.mark.parametrize("stem", [s for s in formats() if s != "trace"])
def test_every_file_format_is_versioned_and_strict(stem):
    model = formats()[stem]
    assert "schema_version" in model.model_fields
    assert model.model_config.get("extra") == "forbid"


def shipped_files():
    yield "gpu-catalog", GPUS_FILE
    for path in sorted(TOPOLOGIES_DIR.glob("*.yaml")):
        yield "topology", path
    for path in sorted(MODELS_DIR.glob("*.yaml")):
        yield "model-preset", path


@pytest.mark.parametrize("stem, path", list(shipped_files()), ids=lambda v: getattr(v, "name", v))
def test_shipped_files_satisfy_the_exported_schema(stem, path):
    schema = json.loads((SCHEMAS / f"{stem}.schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_the_schema_rejects_what_the_model_rejects():
    schema = json.loads((SCHEMAS / "topology.schema.json").read_text())
    topology = yaml.safe_load((TOPOLOGIES_DIR / "pcie8.yaml").read_text())
    topology["nodes"][0]["device_link"]["bandwidth_gb_s"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(topology, schema)
