"""Video out: a Wan-style latent decoded by its 3-D VAE, written as PNG frames and an animated GIF.

pfrun keeps a video latent as (B, C, F·H, W), latent frames stacked along the rows
(:mod:`runtime.families.wan`); :func:`decode_video` views it as (B, C, F, H, W), undoes
the pipeline's latent normalisation (``latents_mean`` / ``latents_std`` of
``AutoencoderKLWan``'s config, as ``WanPipeline`` does before ``vae.decode``) and decodes
``1 + 4·(F−1)`` frames. :func:`write_video` writes them with Pillow (already a diffusers
dependency): one PNG per frame, and a looping GIF at the clip's frame rate. Each file is
written to a temporary name and renamed, so an interrupted run leaves no half-written
frame. Tiled decode (``vae.enable_tiling()``) lowers the decoder's peak memory at high
resolution; :func:`decode_video` takes it as a flag.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def decode_video(vae: Any, latent: torch.Tensor, latent_frames: int, *, tiled: bool = False) -> torch.Tensor:
    """Frames (F, H, W, 3) as uint8 from a stacked (1, C, F·H, W) latent."""
    b, c, rows, w = latent.shape
    video = latent.reshape(b, c, latent_frames, rows // latent_frames, w).to(vae.dtype)
    mean = torch.tensor(vae.config.latents_mean, dtype=video.dtype).view(1, c, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=video.dtype).view(1, c, 1, 1, 1)
    if tiled:
        vae.enable_tiling()
    with torch.inference_mode():
        pixels = vae.decode(video * std + mean, return_dict=False)[0]  # (1, 3, frames, H, W) in [-1, 1]
    frames = ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).contiguous()


def _atomic_save(image: Any, path: Path, **options: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format=path.suffix.lstrip(".").upper(), **options)
    os.replace(tmp, path)


def write_video(frames: torch.Tensor, folder: Path, *, fps: float, stem: str = "frame") -> list[Path]:
    """``folder/frame_0000.png`` … and ``folder/video.gif`` (looping, ``1000/fps`` ms a frame)."""
    from PIL import Image

    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames (F, H, W, 3), got {tuple(frames.shape)} {frames.dtype}")
    folder.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame.numpy()) for frame in frames]
    paths = []
    for index, image in enumerate(images):
        path = folder / f"{stem}_{index:04d}.png"
        _atomic_save(image, path)
        paths.append(path)
    gif = folder / "video.gif"
    _atomic_save(images[0], gif, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return [*paths, gif]
