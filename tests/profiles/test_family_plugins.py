"""A model family is one registered unit: the registry walked, its specs checked against diffusers, a toy family added.

Every module of ``profiles/families`` that defines ``SPEC`` is a family. The tests check
that each spec is complete (builder, block kinds and their formulas, attention, token
geometry, CFG, output size, text encoders, VAE, pipeline class), that the pipeline facts
it records are what diffusers' own classes default to, that the registry refuses
duplicates and names the choices on a miss, and that a family defined only in this file
flows through ``ModelPreset``, the FLOP formulas, the analytic cost model and the simulator
without any other file knowing it.
"""

from __future__ import annotations

import ast
import inspect
import pickle
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from profiles.costs.analytic import AnalyticCostModel
from profiles.catalog.architecture import Architecture, BlockGroup, lin, require
from profiles.costs.cost_model import EMBED, FINAL, LayerShape
from profiles.errors import InputError
from profiles.families import (BlockKind, FamilyRegistry, FamilySpec, Guidance, TextEncoder, Tokens, Vae,
                               default_registry, get_family)
from profiles.families.registry import discover
from profiles.costs.flops import attention_flops, is_joint, layer_flops, layer_weight_bytes, text_only_flops
from profiles.catalog.models import ModelPreset, all_presets, load_model
from profiles.topology.graph import load_cluster
from simulator.engine import simulate
from simulator.plan import Degrees, ParallelPlan
from simulator.strategies.cfg import output_values_per_token, prediction_bytes
from tests.conftest import ROOT

FAMILIES = ["dit", "flux", "flux2", "hunyuan", "hunyuan_video", "pixart", "qwen_image", "sd3", "wan"]
SAMPLE = Tokens(query=64, kv=256, text=8, text_query=8)


def test_the_registry_is_the_family_modules():
    assert default_registry().names() == FAMILIES
    modules = sorted(p.stem for p in (ROOT / "profiles" / "families").glob("*.py")
                     if "SPEC = FamilySpec(" in p.read_text())
    assert modules == FAMILIES
    assert {p.family for p in all_presets()} == set(FAMILIES)  # every family has a shipped preset


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_has_a_complete_spec(name):
    spec = get_family(name)
    assert spec.name == name and spec.diffusers_class.endswith("Model") and spec.pipeline_class.endswith("Pipeline")
    assert spec.attention in ("cross", "joint", "self") and spec.blocks
    assert isinstance(spec.guidance, Guidance) and spec.guidance.source
    assert isinstance(spec.vae, Vae) and spec.vae.source
    assert all(isinstance(e, TextEncoder) and e.kind and e.max_tokens > 0 and e.source for e in spec.text_encoders)
    for preset in (p for p in all_presets() if p.family == name):
        arch = preset.arch
        assert arch.family == name and arch.attention == spec.attention and arch.spec is spec
        kinds = {block.name for block in spec.blocks}
        assert {g.kind for g in arch.blocks} == kinds, "every block kind of the spec is one the builder emits"
        for block in spec.blocks:
            flops = block.flops(arch, SAMPLE)
            attention = block.attention_flops(arch, SAMPLE)
            text_flops, rows = block.text_only_flops(arch, SAMPLE)
            assert 0 < attention < flops and 0 <= text_flops < flops and rows in (0, SAMPLE.text)
            assert block.joint == (spec.attention == "joint")
        rows, cols = spec.token_grid(arch, 64, 32)
        assert rows * cols * arch.patch_size ** 2 == 64 * 32  # tokens tile the latent
        assert output_values_per_token(preset) % arch.latent_channels == 0
        defaults = spec.preset_defaults(preset.config)
        assert defaults["uses_cfg"] == spec.guidance.uses_cfg == preset.uses_cfg
        assert ModelPreset(name="x", family=name, config=preset.config, **defaults).params == preset.params


@pytest.mark.parametrize("name", FAMILIES)
def test_the_specs_say_what_diffusers_defaults_to(name):
    """Pipeline and transformer classes exist, and the recorded defaults are their signatures' defaults."""
    diffusers = pytest.importorskip("diffusers")
    spec = get_family(name)
    transformer = inspect.signature(getattr(diffusers, spec.diffusers_class).__init__).parameters
    call = inspect.signature(getattr(diffusers, spec.pipeline_class).__call__).parameters
    assert call["guidance_scale"].default == spec.guidance.default_scale
    # CFG by default: a guidance scale > 1 applied as CFG, unless a separate true-CFG scale is 1 (Flux)
    true_cfg = call["true_cfg_scale"].default if "true_cfg_scale" in call else None
    if spec.guidance.embedded and true_cfg is None:  # FLUX.2: the scale is a model input, never CFG
        assert not spec.guidance.uses_cfg and transformer["guidance_embeds"].default
    else:
        assert spec.guidance.uses_cfg == (spec.guidance.default_scale > 1 if true_cfg is None else true_cfg > 1)
    t5 = [e for e in spec.text_encoders if e.kind == "T5-XXL"]
    if t5 and "max_sequence_length" in call:
        assert call["max_sequence_length"].default == t5[0].max_tokens
    for encoder in spec.text_encoders:
        if encoder.width_key is not None:
            assert transformer[encoder.width_key].default == encoder.width, encoder
    cin = transformer["in_channels"].default
    packed = 4 if name in ("flux", "flux2", "qwen_image") else 1  # 2×2 latent patches packed into a token
    assert spec.vae.latent_channels == (None if cin is None else cin // packed)


def test_the_registry_refuses_duplicates_and_names_the_choices():
    pixart = get_family("pixart")
    with pytest.raises(ValueError, match="'pixart' is registered twice"):
        default_registry().with_family(pixart)
    with pytest.raises(ValueError, match="diffusers_class 'PixArtTransformer2DModel' is registered twice"):
        FamilyRegistry((pixart, TOY)).with_family(_spec("other", diffusers_class=pixart.diffusers_class))
    with pytest.raises(InputError, match="unknown model family 'pixar'; choices: dit, flux, flux2, hunyuan, hunyuan_video, pixart, qwen_image, sd3, wan"):
        get_family("pixar")
    with pytest.raises(InputError, match="unsupported diffusers class 'FooModel'; supported: DiTTransformer2DModel"):
        default_registry().by_class("FooModel")
    assert [default_registry().by_class(s.diffusers_class).name for s in default_registry()] == FAMILIES


def test_an_unknown_family_in_a_preset_file_lists_the_registered_ones(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("name: m\nfamily: pixartx\nconfig: {}\ntext_tokens: 1\ntext_embed_dim: 1\nuses_cfg: true\n")
    with pytest.raises(InputError) as err:
        load_model(str(path))
    assert str(err.value) == (f"{path}: family: Input should be 'dit', 'flux', 'flux2', 'hunyuan', 'hunyuan_video', 'pixart', "
                              "'qwen_image', 'sd3' or 'wan' "
                              "(got 'pixartx')")


# -- a toy family, defined here only -------------------------------------------------------------


def _toy_build(cfg: dict[str, Any]) -> Architecture:
    h = require(cfg, "num_attention_heads", "toy") * require(cfg, "attention_head_dim", "toy")
    block = 4 * lin(h, h) + lin(h, 2 * h) + lin(2 * h, h)
    return Architecture("toy", h, cfg["num_attention_heads"], cfg["attention_head_dim"], 2 * h, 2, 4, "self", 0,
                        (BlockGroup("toy_block", require(cfg, "num_layers", "toy"), block),), lin(16, h), lin(h, 16))


def _toy_flops(arch: Architecture, n: Tokens) -> int:
    h, q = arch.hidden_size, n.query
    return 2 * q * 4 * h * h + 4 * q * n.kv * h + 2 * q * 2 * h * arch.ffn_inner


def _toy_attention(arch: Architecture, n: Tokens) -> int:
    return 4 * n.query * n.kv * arch.hidden_size


def _toy_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return dict(text_tokens=0, text_embed_dim=0, uses_cfg=True)


def _spec(name: str, **changes: Any) -> FamilySpec:
    fields: dict[str, Any] = dict(
        name=name, diffusers_class="ToyTransformer2DModel", pipeline_class="ToyPipeline", build=_toy_build,
        blocks=(BlockKind("toy_block", _toy_flops, _toy_attention),), attention="self", text_encoders=(),
        vae=Vae(8, 4, source="made up for this test"), guidance=Guidance(True, 4.0, source="made up for this test"),
        preset_defaults=_toy_defaults)
    return FamilySpec(**{**fields, **changes})


TOY = _spec("toy")
TOY_PRESET = dict(name="toy-1", family="toy", config={"num_attention_heads": 4, "attention_head_dim": 8,
                                                      "num_layers": 6, "in_channels": 4},
                  text_tokens=0, text_embed_dim=0, uses_cfg=True, default_resolution=256)


def test_a_toy_family_flows_through_the_preset_the_formulas_the_cost_model_and_the_simulator():
    families = default_registry().with_family(TOY)
    with pytest.raises(ValidationError, match="Input should be 'dit', 'flux', 'flux2', 'hunyuan', 'hunyuan_video', 'pixart', 'qwen_image', 'sd3' or 'wan'"):
        ModelPreset.model_validate(TOY_PRESET)  # the default registry does not know it
    preset = ModelPreset.model_validate(TOY_PRESET, context={"families": families})
    h = 32
    assert preset.spec is TOY and preset.diffusers_class == "ToyTransformer2DModel"
    assert preset.arch.block_kinds() == ["toy_block"] * 6 and preset.layers == 6
    assert preset.params == lin(16, h) + 6 * (4 * lin(h, h) + lin(h, 2 * h) + lin(2 * h, h)) + lin(h, 16)
    assert preset.token_grid(256, 128) == (16, 8)  # 256 px / VAE 8 / patch 2

    shape = LayerShape("toy_block", 64, 128, batch=2, tensor_shard=2)
    q, k = 64, 128
    assert layer_flops(preset.arch, shape, text_tokens=0) == 2 * (2 * q * 4 * h * h + 4 * q * k * h
                                                                  + 2 * q * 2 * h * 2 * h) / 2
    assert attention_flops(preset.arch, shape, text_tokens=0) == 2 * 4 * q * k * h / 2
    assert text_only_flops(preset.arch, shape, text_tokens=0) == (0.0, 0) and not is_joint(preset.arch, "toy_block")
    assert layer_weight_bytes(preset.arch, "toy_block", dtype_bytes=2) == 2 * preset.arch.blocks[0].params
    with pytest.raises(InputError, match="no FLOP formula for layer kind 'pixart_block'"):
        layer_flops(preset.arch, LayerShape("pixart_block", 64, 64), text_tokens=0)

    assert output_values_per_token(preset) == 4 * 4 and prediction_bytes(preset, 10, 2) == 10 * 16 * 2
    cost = AnalyticCostModel.for_gpu(preset, "h100-sxm")
    assert all(cost.layer_time_s(LayerShape(kind, 128, 128)) > 0 for kind in (EMBED, "toy_block", FINAL))

    plan = ParallelPlan(model="toy-1", height_px=256, width_px=256, steps=4, degrees=Degrees(pipefusion=2),
                        patches=2, warmup_steps=1)
    result = simulate(plan, preset, load_cluster("pcie8"), cost)
    assert result.latency_s > 0

    again = pickle.loads(pickle.dumps(preset))  # a spawned pfrun worker gets its preset this way
    assert again.spec == TOY and again.params == preset.params


def test_discovery_finds_a_new_module_and_wants_it_named_after_its_family(tmp_path, monkeypatch):
    package = tmp_path / "toyfamilies"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("X = 1\n")  # no SPEC: not a family
    (package / "toy.py").write_text("from tests.profiles.test_family_plugins import TOY as SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert discover("toyfamilies").names() == ["toy"]
    (package / "zoo.py").write_text("from tests.profiles.test_family_plugins import TOY as SPEC\n")
    for name in [m for m in sys.modules if m.startswith("toyfamilies")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ValueError, match="toyfamilies.zoo defines family 'toy': name the module after it"):
        discover("toyfamilies")


# Modules that still name families, owned by the other helpers of the plug-in redesign
# (torch-side code moving to runtime/families, and the strategies' runnable table).
PENDING = {"profiles/model_inputs.py", "profiler/runtime_costs.py", "simulator/runnable.py",
           "simulator/workload.py"}


def test_no_module_outside_the_family_modules_names_a_family_or_its_block_kinds():
    names = set(FAMILIES) | {block.name for spec in default_registry() for block in spec.blocks}
    found = []
    for package in ("profiles", "simulator", "planner"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("profiles/families/") or rel in PENDING:
                continue
            tree = ast.parse(path.read_text())
            docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                          if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                          and node.body and isinstance(node.body[0], ast.Expr)}
            found += [f"{rel}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings]
    assert not found, "family knowledge outside profiles/families:\n" + "\n".join(found)


def test_models_show_tells_the_pipeline_its_text_encoders_and_guidance(pfplan):
    import json

    shown = pfplan("models", "show", "flux-dev", "--json")
    assert shown.code == 0, shown.err
    info = json.loads(shown.out)
    assert info["pipeline"] == "FluxPipeline" and info["pipeline_guidance_scale"] == 3.5
    assert info["text_encoders"] == ["CLIP-L (pooled, 77 tokens)", "T5-XXL (512 tokens)"]
