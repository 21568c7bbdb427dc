"""A Wan latent decodes through a random tiny AutoencoderKLWan into frames, written as PNGs and a GIF."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from runtime.video_output import decode_video, write_video

TINY_WAN_VAE = dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, attn_scales=[],
                    temperal_downsample=[False, True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)


def test_a_stacked_video_latent_decodes_to_one_plus_four_frames_per_latent_frame(tmp_path):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(**TINY_WAN_VAE).eval()
    latent = torch.randn(1, 4, 2 * 4, 4)  # 2 latent frames of 4 × 4, stacked along the rows
    frames = decode_video(vae, latent, latent_frames=2)
    assert tuple(frames.shape) == (5, 32, 32, 3) and frames.dtype == torch.uint8  # 1 + 4·(2 − 1) frames
    paths = write_video(frames, tmp_path / "clip", fps=8)
    assert [p.name for p in paths] == [f"frame_{i:04d}.png" for i in range(5)] + ["video.gif"]
    assert (torch.from_numpy(__import__("numpy").array(Image.open(paths[2]))) == frames[2]).all()
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
