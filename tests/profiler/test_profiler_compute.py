"""The compute profiler: shapes it measures, stale-K/V attention, sharded blocks, and accuracy."""

from __future__ import annotations

import statistics
import sys
import time

import pytest
import yaml

from profiles.catalog.models import load_model
from profiles.costs.profile_format import load_profile
from profiles.costs.workloads import ComputeSettings, workloads

torch = pytest.importorskip("torch")

SERIAL_TOLERANCE = 0.15
"""10 % until 2026-12-07; see the serial-forward test's docstring for why it is 15 % now."""
RAW_TOLERANCE = 0.25
"""The layer sum alone against the forward (no alignment): loose, it only catches a broken table."""
ROUNDS = 24
"""Profile-and-forward pairs; each round takes about 1.6 s here."""


def test_workloads_cover_patches_shards_and_batches() -> None:
    preset = load_model("pixart-tiny")  # 256 px → 16 × 16 tokens
    work = workloads(preset, ComputeSettings(resolutions_px=(256,), max_patches=8))
    keys = {(w.query_tokens, w.kv_tokens, w.batch) for w in work}
    for batch in (1, 2):
        assert {(256 // m, 256, batch) for m in (1, 2, 4, 8)} <= keys  # whole image and PipeFusion patches
        assert {(128, 128, batch), (64, 64, batch)} <= keys  # local S/N shards …
        assert {(128 // m, 128, batch) for m in (1, 2, 4, 8)} <= keys  # … with their own patch columns
    assert (16, 256, 1) not in keys  # 16 patches exceed --max-patches 8
    assert len(keys) == len(work)


def test_stale_kv_attends_over_the_whole_image_and_is_exact_when_fresh() -> None:
    import torch.nn.functional as F

    from profiler.block_probe import StaleKV, stale_kv

    q, k, v = (torch.randn(1, 2, 4, 8) for _ in range(3))
    plain = StaleKV(F.scaled_dot_product_attention, 0)
    assert torch.equal(plain(q, k, v), F.scaled_dot_product_attention(q, k, v))
    seen = []

    def spy(query, key, value, *args, **kwargs):
        seen.append((query.shape[-2], key.shape[-2]))
        return torch.zeros_like(query)
    extended = StaleKV(spy, 12)
    extended.active = True
    extended(q, k, v)
    assert seen == [(4, 16)]  # 4 fresh queries over 4 fresh + 12 stale keys

    block = torch.nn.Module()
    block.attn1 = torch.nn.Identity()
    with stale_kv([block.attn1], 12) as state:
        assert F.scaled_dot_product_attention is state
    assert F.scaled_dot_product_attention is state.original


def test_tensor_shard_divides_the_block_work() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from runtime.model_build import build_transformer, transformer_blocks
    from profiler.tensor_shard import shard_block

    preset = load_model("flux-tiny")
    model = build_transformer(preset, config_overrides={"num_layers": 1, "num_single_layers": 1})
    single = transformer_blocks(model, preset.family)[1]
    x = torch.randn(1, 64, preset.arch.hidden_size)
    ctx = torch.randn(1, 8, preset.arch.hidden_size)
    temb = torch.randn(1, preset.arch.hidden_size)
    flops = []
    for s in (1, 2):
        block = shard_block(single, s)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            out = block(x, ctx, temb)
        assert out[1].shape == x.shape
        flops.append(counter.get_total_flops())
    assert flops[1] == pytest.approx(flops[0] / 2, rel=0.05)


def test_compute_cli_writes_a_profile_with_its_command(pfplan, tmp_path) -> None:
    out = tmp_path / "p.json"
    result = pfplan("profile", "compute", "--model", "pixart-tiny", "--device", "cpu", "--resolutions", "256",
                    "--max-patches", "4", "--repeats", "3", "--warmup", "1", "-o", out)
    assert result.code == 0, result.err
    profile = load_profile(out)
    assert profile.model == "pixart-tiny" and profile.device == "cpu" and profile.provenance.kind == "measured"
    assert profile.provenance.command.startswith("pfplan profile compute --model pixart-tiny --device cpu")
    assert profile.software.torch == torch.__version__ and profile.software.dtype == "fp32"
    assert profile.software.threads == 1
    assert set(profile.layers) == {"embed", "pixart_block", "final"}
    block = {t.key: t for t in profile.layers["pixart_block"]}
    assert {(256, 256, 1, 1), (64, 256, 1, 1), (256, 256, 2, 1), (256, 256, 1, 2)} <= set(block)
    for t in block.values():
        assert 0 < t.min_s <= t.p10_s <= t.median_s <= t.p90_s <= t.max_s and t.repeats == 3
    # --extras (the default): Ring's core per shard degree and batch, and the runtime's own serial launches
    ring = {(r.degree, r.batch): r for r in profile.ring_attention}
    assert {(2, 1), (4, 1)} <= set(ring)
    for r in ring.values():
        assert r.query_tokens * r.degree == r.kv_tokens == 256 and r.repeats == 3
        assert r.excess_s == pytest.approx(r.degree * r.partial_s + (r.degree - 1) * r.merge_s - r.sdpa_s)
    [launch] = profile.runtime_launch
    assert (launch.height_px, launch.steps, launch.launches, launch.batch) == (256, 4, 5, 2) and launch.fresh_process
    assert launch.step_s > 0 and launch.first_step_extra_s >= 0 and launch.vae_decode_s > 0
    # the image's set-up: from the start barrier to the first span, inside the run's latency
    assert 0 < launch.setup_s < launch.latency_s


def _bigger_tiny_preset(tmp_path):
    """pixart-tiny widened so one serial forward takes tens of ms on one thread (timer noise ≪ 10%)."""
    data = load_model("pixart-tiny").model_dump()
    data["name"] = "pixart-tiny-wide"
    data["config"] = {**data["config"], "num_attention_heads": 4, "attention_head_dim": 48,
                      "cross_attention_dim": 192}
    path = tmp_path / "pixart-tiny-wide.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
@pytest.mark.timing
def test_sum_of_layer_costs_predicts_a_timed_serial_forward(tmp_path) -> None:
    """Σ embed + blocks + final from the profile vs. the whole model timed directly (1 thread, batch 2).

    Other jobs share the cores (and, on a VM, the host), and load only ever slows a timing down,
    so each side uses its least-loaded estimate, as `timeit` advises: each layer's fastest repeat,
    summed the way the cost model sums layers, against the fastest direct forward. This box's
    speed drifts by up to 40 % from one second to the next (a block's fastest repeat ran
    10.4-14.7 ms in six profiles made back to back, with CPU time tracking wall time), so each
    round profiles (only the shape needed: whole image, batch 2, no shards) and times the model
    right after one another, in this one process, alternating which goes first, and the median of
    the rounds' ratios is compared: a pair shares the box's speed of its second or two, and the
    median ignores the rounds a burst of load hit on one side. History: five rounds' medians of
    CLI-made profiles in child processes failed a CI machine at 1.42 on 2026-12-03; ten rounds'
    fastest prediction against the fastest forward failed a fresh clone here at 1.104 the same
    evening (one forward round read 41 ms against 46-53 ms in the others), and resampling the
    rounds of five such runs put that statistic outside 10 % in 15 % of draws, the median of
    paired ratios over 24 rounds in 7 %. So a median outside the tolerance earns a second look:
    24 rounds more, judged on the median of all 48 (a two-stage sequential test: a real bias of
    more than the tolerance fails both looks, a burst of load on one look is outvoted). The CLI's own output
    is checked by test_compute_cli_writes_a_profile_with_its_command.

    Since 2026-12-07 the prediction is the product's: the layer table brought to the forward the
    profile times beside it (``ProfiledCostModel.forward_alignment``, from the profile's
    ``pass_overhead`` entry; no runtime loop without ``extras``). On that day's VM the raw sum read
    1.13 × the forward, steadily over 48 rounds, in 3 of 13 runs (a fresh-clone CI run among them),
    which is what the alignment is for; the raw sum is still held within 25 %, so a broken layer
    table fails. The next fresh-clone CI run read the aligned prediction at 1.116: the profiler's own
    forward, timed right after its layer table, ran 10 % above the test's direct forwards in every
    round of that process (34 against 31 ms), so the same forward reads differently in one process
    state; the tolerance is 15 % since (the suite's end-to-end checks are docs/fidelity.md's). The aligned
    prediction takes its factor from the profile's medians and applies it to the fastest layer repeats, so
    it mostly compares the profiler's own forward with this test's; the 25 % check on the raw sum is the
    one that tests the layer table.
    """
    from profiler.compute import profile_compute
    from profiles.costs.profile_derive import serial_prediction_s
    from profiles.costs.profiled import ProfiledCostModel
    from runtime.forward_inputs import forward_inputs
    from runtime.model_build import build_transformer

    preset = load_model(str(_bigger_tiny_preset(tmp_path)))
    settings = ComputeSettings(resolutions_px=(256,), max_patches=1, batches=(2,), tensor_shards=(1,), shards=(),
                               threads=1, repeats=7, extras=False, pass_overhead=True)
    torch.set_num_threads(1)
    model = build_transformer(preset)
    rows, cols = preset.token_grid(256, 256)
    inputs = forward_inputs(preset, rows=rows, cols=cols, batch=2, device="cpu", dtype=torch.float32)

    raw_ratios: list[float] = []

    def fastest_prediction_s() -> float:
        profile = profile_compute(preset, settings, command="pfplan profile compute (test)")
        assert profile.pass_overhead, "the profile's forward beside the layer table"
        fastest = {kind: [t.model_copy(update={"median_s": t.min_s}) for t in timings]
                   for kind, timings in profile.layers.items()}
        cost = ProfiledCostModel.from_profile(profile.model_copy(update={"layers": fastest}), preset, file="test")
        aligned = serial_prediction_s(cost, preset, resolution_px=256, steps=1)  # batch 2: pixart uses CFG
        raw_ratios.append(1.0 / cost.forward_alignment(2))  # the raw sum ÷ the aligned one
        return aligned

    def fastest_forward_s() -> float:
        samples = []
        with torch.inference_mode():
            for i in range(2 + 7):
                start = time.perf_counter()
                model(**inputs)
                if i >= 2:
                    samples.append(time.perf_counter() - start)
        return min(samples)

    predictions, measurements = [], []

    def paired_rounds(count: int) -> float:
        """``count`` more rounds; the median paired ratio over every round so far."""
        for _ in range(count):
            if len(predictions) % 2:
                measurements.append(fastest_forward_s())
                predictions.append(fastest_prediction_s())
            else:
                predictions.append(fastest_prediction_s())
                measurements.append(fastest_forward_s())
            sys.__stdout__.write(f"serial forward: predicted {predictions[-1] * 1e3:.2f} ms, "
                                 f"measured {measurements[-1] * 1e3:.2f} ms\n")
        return statistics.median(p / m for p, m in zip(predictions, measurements))

    ratio = paired_rounds(ROUNDS)
    if abs(ratio - 1.0) > SERIAL_TOLERANCE:  # a second look, pooled with the first (a sequential test)
        ratio = paired_rounds(ROUNDS)
    assert ratio == pytest.approx(1.0, abs=SERIAL_TOLERANCE), (predictions, measurements)
    raw = statistics.median(r * p / m for r, p, m in zip(raw_ratios, predictions, measurements))
    assert raw == pytest.approx(1.0, abs=RAW_TOLERANCE), (raw_ratios, predictions, measurements)


@pytest.mark.parametrize("name,overrides", [
    ("pixart-tiny", {"use_additional_conditions": True, "num_attention_heads": 3,  # PixArt-α 1024 embeds size
                     "cross_attention_dim": 48}),  # and aspect ratio (in thirds of the width)
    ("hunyuan-tiny", {"use_style_cond_and_image_meta_size": True, "hidden_size": 32}),  # as hunyuan-dit
])
def test_forward_inputs_cover_the_real_presets_conditioning(name: str, overrides: dict) -> None:
    from runtime.model_build import build_transformer
    from runtime.forward_inputs import forward_inputs
    from profiles.catalog.models import ModelPreset

    data = load_model(name).model_dump()
    data["config"] = {**data["config"], **overrides}
    preset = ModelPreset(**data)
    model = build_transformer(preset, config_overrides={"num_layers": 4} if name.startswith("hunyuan") else None)
    inputs = forward_inputs(preset, rows=4, cols=16, batch=2, device="cpu", dtype=torch.float32)
    with torch.inference_mode():
        (out,) = model(**inputs)
    assert out.shape[0] == 2 and out.shape[-2:] == (8, 32)


@pytest.mark.parametrize("device_name,catalog", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA A100 80GB PCIe", "a100-pcie"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm"), ("NVIDIA L40S", "l40s"), ("NVIDIA L40", "l40"),
    ("NVIDIA GeForce RTX 4090", "rtx4090"), ("Tesla T4", "t4"), ("NVIDIA H200", "h200")])
def test_cuda_device_names_map_to_the_catalog(device_name: str, catalog: str) -> None:
    from profiles.catalog.gpus import get_gpu
    from profiler.compute import catalog_gpu_for

    assert catalog_gpu_for(device_name) == catalog
    get_gpu(catalog)


def test_unknown_cuda_device_asks_for_gpu() -> None:
    from profiles.errors import InputError
    from profiler.compute import catalog_gpu_for

    with pytest.raises(InputError, match="pass --gpu"):
        catalog_gpu_for("NVIDIA RTX A4000")
