"""Video out: a Wan latent decodes through a tiny AutoencoderKLWan into frames; pfrun writes GIF / MP4 and PNGs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from runtime.video_output import decode_video, encode_video, frame_pngs, has_mp4_writer, write_video

from .helpers import plan, write_plan

TINY_WAN_VAE = dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
                    temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)


def test_a_stacked_video_latent_decodes_to_one_plus_four_frames_per_latent_frame(tmp_path):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(**TINY_WAN_VAE).eval()
    latent = torch.randn(1, 4, 2 * 4, 4)  # 2 latent frames of 4 × 4, stacked along the rows
    frames = decode_video(vae, latent, latent_frames=2)
    assert tuple(frames.shape) == (5, 32, 32, 3) and frames.dtype == torch.uint8  # 1 + 4·(2 − 1) frames
    assert (decode_video(vae, latent, latent_frames=2, tiled=True) == frames).all()  # smaller than a tile: same
    paths = write_video(frames, tmp_path / "clip", fps=8)
    assert [p.name for p in paths] == [f"frame_{i:04d}.png" for i in range(5)] + ["video.gif"]
    assert (torch.from_numpy(np.array(Image.open(paths[2]))) == frames[2]).all()
    gif = Image.open(paths[-1])
    assert gif.n_frames == 5 and gif.info["duration"] == 120  # 125 ms, in the GIF's 10 ms units
    assert not list((tmp_path / "clip").glob(".*.tmp"))


def test_the_wan_vae_decode_flops_in_the_spec_are_what_torch_counts():
    """FlopCounterMode over the real Wan 2.1 VAE config on the meta device: 3 latent frames of 8×8 → 9 frames."""
    from diffusers import AutoencoderKLWan
    from torch.utils.flop_counter import FlopCounterMode

    from profiles.catalog.models import load_model

    with torch.device("meta"):
        vae = AutoencoderKLWan()
    assert sum(p.numel() for p in vae.parameters()) == pytest.approx(load_model("wan2.1-t2v-14b").vae_size.params,
                                                                     rel=0.01)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        vae.decode(torch.empty(1, 16, 3, 8, 8, device="meta"), return_dict=False)
    wan = load_model("wan2.1-t2v-14b").with_frames(9)
    assert counter.get_total_flops() == pytest.approx(wan.vae_decode_flops(64, 64), rel=0.01)


def test_mp4_is_written_through_imageio_or_refused_in_one_line(tmp_path):
    from profiles.errors import InputError
    from runtime.video_output import check_video_path

    frames = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    if has_mp4_writer():
        import imageio.v3 as iio

        data = encode_video(frames, ".mp4", fps=16)
        assert data[4:8] == b"ftyp" and iio.imread(data, extension=".mp4").shape == (5, 32, 32, 3)
    else:
        with pytest.raises(InputError, match="writing MP4 needs imageio and imageio-ffmpeg"):
            check_video_path(tmp_path / "clip.mp4")
    with pytest.raises(InputError, match="give a .mp4 or .gif file"):
        check_video_path(tmp_path / "clip.png")
    assert [np.array(Image.open(io.BytesIO(png))).shape for png in frame_pngs(frames)] == [(32, 32, 3)] * 5


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    """A Wan diffusers folder: wan-tiny's seeded transformer, its scheduler, a tiny AutoencoderKLWan."""
    import diffusers

    from profiles.catalog.models import load_model
    from runtime.model_build import build_transformer

    root = tmp_path_factory.mktemp("wan-folder")
    preset = load_model("wan-tiny")
    build_transformer(preset, seed=0).save_pretrained(root / "transformer")
    torch.manual_seed(1)
    diffusers.AutoencoderKLWan(**TINY_WAN_VAE).save_pretrained(root / "vae")
    getattr(diffusers, preset.scheduler)(**preset.scheduler_config).save_pretrained(root / "scheduler")
    return root


def test_pfrun_writes_a_wan_clip_as_gif_and_its_frames_as_pngs(wan_folder, tmp_path, pfrun):
    """PipeFusion on 2 ranks, 5 frames (2 latent frames): the GIF and the 5 PNG frames agree."""
    plan_file = write_plan(tmp_path / "plan.json", plan("wan-tiny", steps=2, px=64, frames=5,
                                                        degrees={"pipefusion": 2}, patches=2, warmup_steps=2))
    (tmp_path / "frames").mkdir()
    res = pfrun("--plan", plan_file, "--model-path", wan_folder, "--out", tmp_path / "clip.gif",
                "--frames-dir", tmp_path / "frames", "--json")
    assert res.code == 0, res.err
    pngs = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:04d}.png" for i in range(5)]
    gif = Image.open(tmp_path / "clip.gif")
    assert gif.n_frames == 5 and gif.size == (64, 64)
    gif.seek(3)
    first = np.array(Image.open(pngs[3]))
    assert first.shape == (64, 64, 3) and np.abs(np.array(gif.convert("RGB")).astype(int) - first).mean() < 16


def test_pfrun_refuses_video_outputs_it_cannot_write_before_any_rank_starts(wan_folder, tmp_path, pfrun):
    plan_file = write_plan(tmp_path / "plan.json", plan("wan-tiny", steps=1, px=64))
    bad = pfrun("--plan", plan_file, "--model-path", wan_folder, "--out", tmp_path / "clip.png")
    assert bad.code == 2 and "give a .mp4 or .gif file" in bad.err and bad.err.count("\n") == 1
    no_vae = pfrun("--plan", plan_file, "--out", tmp_path / "clip.gif")
    assert no_vae.code == 2 and "has no VAE to decode its clip with" in no_vae.err
    image = pfrun("--plan", write_plan(tmp_path / "p.json", plan("pixart-tiny", steps=1)),
                  "--frames-dir", tmp_path / "f")
    assert image.code == 2 and "is an image model" in image.err
    assert not list(tmp_path.glob("clip.*")) and not (tmp_path / "f").exists()
