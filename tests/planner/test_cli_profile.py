"""``pfplan profile``: links end to end with gloo, analytic and calibrate, and bad input."""

from __future__ import annotations

import json

import pytest

from profiles.costs.profile_format import load_profile
from profiles.topology.graph import load_cluster
from tests.conftest import run_subprocess


@pytest.mark.slow
def test_links_two_ranks_with_gloo_fit_latency_and_bandwidth(tmp_path) -> None:
    out, topo = tmp_path / "links.json", tmp_path / "mine.yaml"
    result = run_subprocess("planner", "profile", "links", "--nprocs", "2", "--sizes", "4K,64K,1M", "--repeats", "3",
                            "-o", out, "--write-topology", topo, timeout=240)
    assert result.code == 0, result.err
    profile = load_profile(out)
    assert profile.model is None and profile.software.distributed_backend == "gloo"
    assert profile.provenance.command.startswith("pfplan profile links --nprocs 2 --topology cpu2")
    (fit,) = profile.links  # cpu2: both ranks on one host bridge
    assert fit.route_class == "PHB" and fit.pairs == ["0->1"]
    assert fit.latency_us > 0 and fit.bandwidth_gb_s > 0
    assert [p.bytes for p in fit.points] == [4096, 65536, 1048576]
    assert all(p.seconds > 0 for p in fit.points)  # (ordering by size is left to the fit: other jobs add noise)
    assert {(c.op, c.group_size) for c in profile.collectives} == {
        ("all_gather", 2), ("all_to_all", 2), ("all_reduce", 2)}
    assert "PHB" in result.out and "latency" in result.out
    cluster = load_cluster(str(topo))
    route = cluster.route(*cluster.devices)
    assert route.bottleneck_gb_s == pytest.approx(fit.bandwidth_gb_s)
    assert route.latency_us == pytest.approx(fit.latency_us)
    assert "pfplan profile links" in cluster.topology.source


def test_analytic_then_calibrate_through_the_cli(pfplan, tmp_path) -> None:
    analytic, calibrated = tmp_path / "a.json", tmp_path / "c.json"
    result = pfplan("profile", "analytic", "--gpu", "h100-sxm", "--model", "flux-dev", "--resolutions", "1024",
                    "-o", analytic)
    assert result.code == 0, result.err
    assert load_profile(analytic).provenance.command == (
        "pfplan profile analytic --gpu h100-sxm --model flux-dev --resolutions 1024 --max-patches 32 --dtype bf16 "
        f"--output {analytic}")
    result = pfplan("profile", "calibrate", "--profile", analytic, "--model", "flux-dev", "--resolution", "1024",
                    "--steps", "28", "--measured-serial", "6.71", "--source", "a test", "-o", calibrated)
    assert result.code == 0, result.err
    record = load_profile(calibrated).provenance.calibration
    assert record.measured_serial_s == 6.71 and record.source == "a test"
    assert record.command.startswith("pfplan profile calibrate --profile")


def one_line_error(result, *fragments: str) -> None:
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pfplan: error:"), result.err
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_preset_is_one_line(pfplan, tmp_path) -> None:
    one_line_error(pfplan("profile", "compute", "--model", "pixart-tiniest", "-o", tmp_path / "p.json"),
                   "unknown model 'pixart-tiniest'", "did you mean 'pixart-tiny'")
    assert not (tmp_path / "p.json").exists()


def test_profile_of_another_model_is_one_line(pfplan, tmp_path) -> None:
    path = tmp_path / "a.json"
    assert pfplan("profile", "analytic", "--gpu", "l40", "--model", "pixart-alpha", "-o", path).code == 0
    one_line_error(pfplan("profile", "calibrate", "--profile", path, "--model", "flux-dev", "--resolution", "1024",
                          "--steps", "28", "--measured-serial", "6.71", "-o", tmp_path / "c.json"),
                   "profile of model 'pixart-alpha', not 'flux-dev'", "model")
    assert not (tmp_path / "c.json").exists()


def test_corrupt_profile_json_is_one_line(pfplan, tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1, "model": "flux-dev", "layers": {')
    one_line_error(pfplan("profile", "calibrate", "--profile", bad, "--model", "flux-dev", "--resolution", "1024",
                          "--steps", "28", "--measured-serial", "6.71", "-o", tmp_path / "c.json"),
                   str(bad), "invalid JSON")
    bad.write_text(json.dumps({"schema_version": 1, "model": "flux-dev", "device": "cpu"}))
    one_line_error(pfplan("profile", "calibrate", "--profile", bad, "--model", "flux-dev", "--resolution", "1024",
                          "--steps", "28", "--measured-serial", "6.71", "-o", tmp_path / "c.json"),
                   "device_name", "required field is missing")


def test_bad_values_are_one_line(pfplan, tmp_path) -> None:
    one_line_error(pfplan("profile", "compute", "--model", "pixart-tiny", "--resolutions", "250", "-o",
                          tmp_path / "p.json"), "resolution", "multiple of 16")
    one_line_error(pfplan("profile", "compute", "--model", "pixart-tiny", "--dtype", "fp8", "-o",
                          tmp_path / "p.json"), "dtype")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        one_line_error(pfplan("profile", "compute", "--model", "pixart-tiny", "--device", "cuda", "-o",
                              tmp_path / "p.json"), "no CUDA device")
    one_line_error(pfplan("profile", "compute", "--model", "pixart-tiny", "--tensor-shards", "3", "-o",
                          tmp_path / "p.json"), "tensor-shards", "divides heads(2)")
    one_line_error(pfplan("profile", "compute", "--model", "pixart-tiny", "--batches", "1,x", "-o",
                          tmp_path / "p.json"), "batches", "whole numbers")
    one_line_error(pfplan("profile", "analytic", "--gpu", "h1000", "--model", "flux-dev", "-o",
                          tmp_path / "p.json"), "unknown GPU 'h1000'")
    one_line_error(pfplan("profile", "links", "--nprocs", "3", "--sizes", "4K", "-o", tmp_path / "l.json"),
                   "3 processes but the topology has 2 devices")
    one_line_error(pfplan("profile", "links", "--sizes", "4X", "-o", tmp_path / "l.json"), "sizes")
    one_line_error(pfplan("profile", "calibrate", "--profile", "no-such-profile", "--model", "flux-dev",
                          "--resolution", "1024", "--steps", "28", "--measured-serial", "1", "-o", tmp_path / "c.json"),
                   "unknown profile 'no-such-profile'")


def test_calibrating_outside_the_measured_range_warns_in_one_line_per_shape(pfplan, tmp_path) -> None:
    result = pfplan("profile", "calibrate", "--profile", "pixart-tiny-cpu", "--model", "pixart-tiny", "--resolution",
                    "1024", "--steps", "4", "--measured-serial", "1", "-o", tmp_path / "c.json")
    assert result.code == 0, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("pfplan: warning:") for line in lines)
    assert "pixart_block (query_tokens=4096, kv_tokens=4096, batch=2" in result.err
    assert "kv_tokens 4096 outside measured 64..1024" in result.err


@pytest.mark.slow
def test_links_under_torchrun(tmp_path) -> None:
    """Under torchrun each process is one rank (RANK/WORLD_SIZE set); rank 0 writes the file."""
    from profiler.rank_launch import free_port as _free_port

    out = tmp_path / "links.json"
    result = run_subprocess("torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
                            "-m", "planner", "profile", "links", "--nprocs", "2", "--sizes", "4K,256K",
                            "--no-collectives", "-o", out, timeout=240)
    assert result.code == 0, result.err
    profile = load_profile(out)
    assert [f.route_class for f in profile.links] == ["PHB"] and not profile.collectives
    assert profile.provenance.command.endswith(f"--no-collectives --output {out}")


def test_show_summarises_a_shipped_profile(pfplan) -> None:
    result = pfplan("profile", "show", "pixart-tiny-cpu", "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["model"] == "pixart-tiny" and summary["provenance"] == "measured"
    assert summary["layers"]["pixart_block"] > 0 and summary["software"]["dtype"] == "fp32"
    listed = pfplan("profile", "show", "list", "--json")
    assert "pixart-tiny-cpu" in json.loads(listed.out)
