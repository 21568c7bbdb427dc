"""Video out: a video latent decoded by its 3-D VAE, encoded as MP4 (imageio) or GIF (Pillow), frames as PNGs.

pfrun keeps a video latent as (B, C, F·H, W), latent frames stacked along the rows
(:mod:`runtime.families.wan`); :func:`decode_video` views it as (B, C, F, H, W), undoes
the pipeline's latent normalisation (``AutoencoderKLWan``: ``latents_mean`` / ``latents_std``
of its config, as ``WanPipeline`` does; ``AutoencoderKLHunyuanVideo``: ``/ scaling_factor``,
as ``HunyuanVideoPipeline`` does) and decodes ``1 + t·(F−1)`` frames (``t``: the temporal
factor). Tiled decode (``vae.enable_tiling()``) lowers the decoder's peak memory at high
resolution; :func:`decode_video` takes it as a flag (the plan's ``vae_decode``).

Encoding happens in memory (:func:`encode_video`, :func:`frame_pngs`) so pfrun's launcher
writes every output or none (:func:`runtime.outputs.write_all`). MP4 needs imageio with its
ffmpeg plugin (``pip install imageio imageio-ffmpeg``, the ``video`` extra);
:func:`check_video_path` refuses an ``--out`` pfrun cannot write before any rank starts.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from profiles.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".gif")


def decode_video(vae: Any, latent: torch.Tensor, latent_frames: int, *, tiled: bool = False) -> torch.Tensor:
    """Frames (F, H, W, 3) as uint8 from a stacked (1, C, F·H, W) latent."""
    b, c, rows, w = latent.shape
    video = latent.reshape(b, c, latent_frames, rows // latent_frames, w).to(vae.dtype)
    mean = getattr(vae.config, "latents_mean", None)
    if mean is not None:
        mean = torch.tensor(mean, dtype=video.dtype).view(1, c, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std, dtype=video.dtype).view(1, c, 1, 1, 1)
        video = video * std + mean
    else:
        video = video / (getattr(vae.config, "scaling_factor", None) or 1.0)
    if tiled:
        vae.enable_tiling()
    with torch.inference_mode():
        pixels = vae.decode(video, return_dict=False)[0]  # (1, 3, frames, H, W) in [-1, 1]
    frames = ((pixels[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).contiguous()


def _check_frames(frames: Any) -> Any:
    import numpy as np

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (F, H, W, 3), got {frames.shape} {frames.dtype}")
    return frames


def has_mp4_writer() -> bool:
    """imageio and its ffmpeg plugin are importable."""
    try:
        import imageio.v3  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def check_video_path(path: Path, field: str = "--out") -> None:
    """A video model's ``--out`` is ``.mp4`` or ``.gif``; MP4 needs imageio-ffmpeg (one line, exit 2)."""
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise InputError(f"a video model writes a clip: give a .mp4 or .gif file (got {suffix or 'no suffix'}); "
                         "--frames-dir writes the frames as PNGs", file=str(path), field=field)
    if suffix == ".mp4" and not has_mp4_writer():
        raise InputError("writing MP4 needs imageio and imageio-ffmpeg (pip install imageio imageio-ffmpeg, "
                         "or the package's `video` extra); or write a .gif", file=str(path), field=field)


def encode_video(frames: Any, suffix: str, *, fps: float) -> bytes:
    """The clip as MP4 (H.264 through imageio-ffmpeg) or a looping GIF (Pillow, ``1000/fps`` ms a frame)."""
    frames = _check_frames(frames)
    if suffix.lower() == ".mp4":
        import imageio.v3 as iio

        return iio.imwrite("<bytes>", frames, extension=".mp4", fps=fps, macro_block_size=1)
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return buf.getvalue()


def frame_pngs(frames: Any) -> list[bytes]:
    """Each frame as PNG bytes."""
    from PIL import Image

    out = []
    for frame in _check_frames(frames):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def frame_paths(folder: Path, count: int, stem: str = "frame") -> list[Path]:
    """``folder/frame_0000.png`` … for ``count`` frames."""
    return [folder / f"{stem}_{index:04d}.png" for index in range(count)]


def write_video(frames: torch.Tensor, folder: Path, *, fps: float, stem: str = "frame") -> list[Path]:
    """``folder/frame_0000.png`` … and ``folder/video.gif``, each written to a temporary name and renamed."""
    array = _check_frames(frames.numpy() if isinstance(frames, torch.Tensor) else frames)
    folder.mkdir(parents=True, exist_ok=True)
    files = list(zip(frame_paths(folder, len(array), stem), frame_pngs(array)))
    files.append((folder / "video.gif", encode_video(array, ".gif", fps=fps)))
    for path, data in files:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return [path for path, _ in files]
