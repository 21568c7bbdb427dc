"""The 3-D video VAEs' figures in profiles/costs/components.py hold on a meta-device build at other sizes.

``benchmarks/video_vae.py`` measured them (FLOPs at 832×480×81, memory at 1280×720); here the
diffusers classes with their default configs are built on the meta device again and measured
at a size the figures were not taken from: parameters exactly, FLOPs and the untiled peak
within a few per cent (the peak is per frame area; the clip adds 3 values per pixel-frame),
the tiled peak within 15 % (one tile's working set and the clip, at a small clip).
"""

from __future__ import annotations

import pytest

from benchmarks.video_vae import decode_flops, decode_peak_bytes, meta_vae
from profiles.costs.components import VIDEO_VAES


@pytest.fixture(scope="module", params=sorted(VIDEO_VAES))
def vae(request):
    return VIDEO_VAES[request.param], meta_vae(request.param)


def test_parameters_and_decode_flops(vae):
    spec, model = vae
    assert sum(p.numel() for p in model.parameters()) == spec.params
    h, w, f = 256, 256, 33
    assert decode_flops(model, h, w, f) == pytest.approx(spec.decode_flops(h, w, f), rel=0.06)


def test_untiled_decode_peak(vae):
    spec, model = vae
    h, w, f = 256, 256, 33
    assert decode_peak_bytes(model, h, w, f) == pytest.approx(spec.decode_working_bytes(h, w, 2, f), rel=0.05)


def test_tiled_decode_peak(vae):
    spec, model = vae
    h, w, f = 320, 448, 17
    measured = decode_peak_bytes(model, h, w, f, tiled=True)
    assert measured == pytest.approx(spec.decode_working_bytes(h, w, 2, f, tiled=True), rel=0.15)
    assert measured < 0.5 * decode_peak_bytes(model, h, w, f)  # what tiling is for
