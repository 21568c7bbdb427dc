"""``pfplan plan export --to xdit`` and ``plan import --from xdit``: every shape the search enumerates
round-trips, the command lines are exactly xDiT's, and what xDiT cannot run is refused in one line."""

from __future__ import annotations

import json

import pytest

from planner.space import SpaceOptions, plan_shapes
from planner.xdit import from_xdit, to_xdit
from profiles.catalog.models import load_model
from profiles.errors import InputError
from simulator.plan import ParallelPlan
from simulator.strategies import STRATEGIES

CASES = [  # (preset, px, devices): the tiny presets on cpu4, real ones on pcie8
    ("pixart-tiny", 128, 4), ("sd3-tiny", 128, 4), ("flux-tiny", 128, 4),
    ("pixart-alpha", 1024, 8), ("flux-dev", 1024, 8), ("hunyuan-dit", 1024, 8),
]


def shapes(preset: str, px: int, devices: int) -> list[ParallelPlan]:
    return list(plan_shapes(load_model(preset), SpaceOptions(px, px, 8, devices)))


@pytest.mark.parametrize("preset, px, devices", CASES)
def test_every_enumerated_shape_round_trips_or_is_refused_for_a_strategy_xdit_lacks(preset, px, devices):
    model = load_model(preset)
    found = shapes(preset, px, devices)
    assert len(found) > 10
    round_tripped = 0
    for plan in found:
        lacking = [s for s, _ in STRATEGIES.active(plan.degrees.as_dict()) if not s.xdit_flag]
        if lacking:
            with pytest.raises(InputError, match="xDiT has no equivalent of") as err:
                to_xdit(plan, model)
            assert "\n" not in err.value.one_line()
            continue
        fields, _ = from_xdit(to_xdit(plan, model).line(), model)
        back = ParallelPlan(model=preset, **fields)
        label = plan.degrees.label()
        assert back.degrees == plan.degrees, label
        assert back.patches == plan.patches, label
        assert back.warmup_steps == plan.warmup_steps, label
        assert back.stages(model) == plan.stages(model), label
        assert back.stage_split == (plan.stages(model) if plan.degrees.pipeline_stages > 1 else None), label
        assert (back.height_px, back.width_px, back.steps) == (plan.height_px, plan.width_px, plan.steps)
        round_tripped += 1
    assert round_tripped > len(found) // 2


def test_a_searched_split_and_a_placement_survive_the_cli_round_trip(pfplan, tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert pfplan("plan", "new", "--model", "pixart-alpha", "--topology", "pcie8", "--resolution", "1024",
                  "--parallel", "cfg=2,pipefusion=4,patches=8,warmup=2", "-o", first).code == 0
    exported = pfplan("plan", "export", "--to", "xdit", first)
    assert exported.code == 0, exported.err
    line = exported.out.strip()
    result = pfplan("plan", "import", "--from", "xdit", line, "--model", "pixart-alpha", "--topology", "pcie8",
                    "-o", second)
    assert result.code == 0, result.err
    a, b = (json.loads(p.read_text()) for p in (first, second))
    for key in ("degrees", "patches", "warmup_steps", "stage_split", "placement", "height_px", "width_px", "steps"):
        assert a[key] == b[key], key
    assert b["prediction"]["latency_s"] == a["prediction"]["latency_s"]
    assert b["notes"][0] == "imported from an xDiT command line"
    assert "pfplan plan import --from xdit" in b["provenance"]["command"]


def plan_of(preset: str, px: int, **fields) -> ParallelPlan:
    return ParallelPlan(model=preset, height_px=px, width_px=px, steps=20, **fields)


def test_exact_command_lines():
    pixart = load_model("pixart-alpha")
    assert to_xdit(plan_of("pixart-alpha", 1024, degrees={"cfg": 2, "pipefusion": 4}, patches=8, warmup_steps=1,
                           stage_split=[8, 7, 7, 6]), pixart).line() == (
        "torchrun --nproc_per_node=8 examples/pixartalpha_example.py --model PixArt-alpha/PixArt-XL-2-1024-MS "
        "--height 1024 --width 1024 --num_inference_steps 20 --use_cfg_parallel --pipefusion_parallel_degree 4 "
        "--num_pipeline_patch 8 --attn_layer_num_for_pp 8 7 7 6 --warmup_steps 1 --no_use_resolution_binning")
    flux = load_model("flux-dev")
    assert to_xdit(plan_of("flux-dev", 1024, degrees={"data": 2, "ring": 2, "ulysses": 2}), flux).line() == (
        "torchrun --nproc_per_node=8 examples/flux_example.py --model black-forest-labs/FLUX.1-dev "
        "--height 1024 --width 1024 --num_inference_steps 20 --data_parallel_degree 2 --ring_degree 2 "
        "--ulysses_degree 2 --no_use_resolution_binning")
    hunyuan = load_model("hunyuan-dit")
    placed = plan_of("hunyuan-dit", 1024, degrees={"tensor": 2}, placement=["node0/gpu6", "node0/gpu7"])
    assert to_xdit(placed, hunyuan).line() == (
        "CUDA_VISIBLE_DEVICES=6,7 torchrun --nproc_per_node=2 examples/hunyuandit_example.py "
        "--model Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers --height 1024 --width 1024 --num_inference_steps 20 "
        "--tensor_parallel_degree 2 --no_use_resolution_binning")


def test_two_hosts_become_torchrun_nodes():
    command = to_xdit(plan_of("pixart-alpha", 1024, degrees={"data": 2},
                              placement=["node0/gpu0", "node1/gpu0"]), load_model("pixart-alpha"))
    assert command.torchrun == ["--nnodes=2", "--nproc_per_node=1"]
    assert any("--node_rank" in note for note in command.notes)


def test_import_reads_xdit_defaults_and_dashes():
    model = load_model("pixart-alpha")
    fields, notes = from_xdit("--pipefusion-parallel-degree 2 --use_cfg_parallel --prompt 'a dog' --seed 1", model)
    assert fields["degrees"] == {"cfg": 2, "pipefusion": 2}
    assert fields["patches"] == 2 and fields["warmup_steps"] == 1  # xDiT: patches = stages, warm-up 1
    assert (fields["height_px"], fields["steps"]) == (1024, 20)
    assert fields["stage_split"] == [14, 14] and any("xDiT's own" in n for n in notes)
    assert any("--prompt" in n and "--seed" in n for n in notes)


def test_import_takes_xdits_own_stage_split_where_a_plan_can_hold_it():
    flux, notes = from_xdit("--pipefusion_parallel_degree 8 --num_pipeline_patch 8", load_model("flux-dev"))
    assert flux["stage_split"] == [8] * 7 + [1] and any("ceil(L/N)" in n for n in notes)
    pixart, notes = from_xdit("--pipefusion_parallel_degree 8", load_model("pixart-alpha"))
    assert pixart["stage_split"] is None                  # [4]*7 + [0]: a plan's stages each need a block
    assert any("empty" in n and "balanced" in n for n in notes)


@pytest.mark.parametrize("args, message", [
    ("--ulysses_degree 2 --use_ray", "unknown or unsupported xDiT flag --use_ray"),
    ("--ulysses_degree 2 --ulysses_degree 4", "--ulysses_degree is given twice"),
    ("torchrun --nproc_per_node=4 examples/pixartalpha_example.py --ulysses_degree 2",
     "torchrun starts 4 processes but the degrees multiply to 2"),
    ("--ulysses_degree 2 --num_pipeline_patch 4", "--num_pipeline_patch 4 without --pipefusion_parallel_degree"),
    ("--pipefusion_parallel_degree 2 --attn_layer_num_for_pp 28", "--attn_layer_num_for_pp gives 1 stages"),
    ("torchrun --nproc_per_node=2 examples/flux_example.py --ulysses_degree 2", "runs FluxPipeline"),
    ("--model black-forest-labs/FLUX.1-dev --ulysses_degree 2", "is flux-dev, but --model pixart-alpha"),
    ("torchrun --bogus 1 x.py", "unknown torchrun option --bogus"),
])
def test_import_refuses_unknown_and_contradicting_flags_in_one_line(pfplan, tmp_path, args, message):
    out = tmp_path / "p.json"
    result = pfplan("plan", "import", "--from", "xdit", args, "--model", "pixart-alpha", "--topology", "pcie8",
                    "-o", out)
    assert result.code == 2
    assert len(result.err.strip().splitlines()) == 1 and message in result.err, result.err
    assert not out.exists()


def test_import_checks_the_plan_rules_and_the_topology(pfplan, tmp_path):
    out = tmp_path / "p.json"
    result = pfplan("plan", "import", "--from", "xdit", "--ulysses_degree 3", "--model", "pixart-alpha",
                    "--topology", "pcie8", "-o", out)
    assert result.code == 2 and "ulysses(3) does not divide heads(16)" in result.err
    result = pfplan("plan", "import", "--from", "xdit", "--data_parallel_degree 8", "--model", "pixart-tiny",
                    "--topology", "cpu4", "-o", out)
    assert result.code == 2 and "the topology has 4 devices" in result.err
    assert not out.exists()


def test_export_refuses_what_xdit_cannot_run_in_one_line(pfplan, tmp_path):
    from tests.runtime.helpers import write_plan

    cases = [(plan_of("pixart-alpha", 1024, degrees={"distrifusion": 2}, warmup_steps=1),
              "xDiT has no equivalent of distrifusion=2 (DistriFusion)"),
             (plan_of("dit-xl-2", 256, degrees={"data": 2}), "xDiT has no pipeline for DiTPipeline")]
    for plan, message in cases:
        path = write_plan(tmp_path / "p.json", plan)
        result = pfplan("plan", "export", "--to", "xdit", path)
        assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and message in result.err, result.err
    assert "unknown engine" in pfplan("plan", "export", "--to", "vllm", path).err
