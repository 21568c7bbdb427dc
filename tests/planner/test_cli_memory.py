"""``pfplan memory``: the per-component table, fits / does not fit, JSON, knobs, bad input."""

from __future__ import annotations

import json


def test_memory_table_says_fits_and_names_components(pfplan):
    r = pfplan("memory", "--model", "pixart-alpha", "--resolution", "1024", "--parallel",
               "pipefusion=8,patches=8,warmup=1", "--gpu", "a100-pcie")
    assert r.code == 0, r.err
    for word in ("transformer weights", "text encoders", "VAE decode working set", "total needed", "fits:",
                 "not run by pfrun"):
        assert word in r.out


def test_memory_flux_on_a_4090_does_not_fit_unless_sharded_and_encoded_elsewhere(pfplan):
    r = pfplan("memory", "--model", "flux-dev", "--resolution", "1024", "--gpu", "rtx4090")
    assert r.code == 0, r.err
    assert "does NOT fit" in r.out
    r = pfplan("memory", "--model", "flux-dev", "--resolution", "1024", "--parallel", "pipefusion=4,patches=4,warmup=1",
               "--gpu", "rtx4090", "--text-encoders", "cpu", "--json")
    data = json.loads(r.out)
    assert r.code == 0 and data["not_run_by_pfrun"] == []
    assert len(data["per_rank_bytes"]) == 4 and all(m["text_encoders"] == 0 for m in data["per_rank_bytes"])


def test_memory_bad_knob_is_one_line_exit_2(pfplan):
    r = pfplan("memory", "--model", "pixart-alpha", "--vae-decode", "sometimes")
    assert r.code == 2 and "--vae-decode" in r.err and "tiled" in r.err
