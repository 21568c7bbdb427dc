"""The 3-D video VAEs' decode FLOPs and peak activation memory, measured on torch's meta device.

For ``AutoencoderKLWan`` and ``AutoencoderKLHunyuanVideo`` with their default (published)
configs, built on the meta device (no weights, no compute, seconds on a CPU), this prints the
parameter count, the decode FLOPs per output pixel-frame (``FlopCounterMode``) and the peak
bytes of live activations during ``vae.decode`` in bf16 (:class:`LiveBytes`: every storage an
aten op creates, freed when the last tensor holding it dies), untiled and with
``vae.enable_tiling()``, next to what :class:`profiles.costs.components.VideoVae` predicts.
The figures in ``profiles/costs/components.py`` (``WAN_VAE``, ``HUNYUAN_VIDEO_VAE``) come from
this script's 832×480×81 (FLOPs) and 1280×720 (memory) rows, the tiled clip copies from its
1280×720×81 row; ``tests/profiles/test_video_vae.py`` checks them at other sizes. Run:
``python -m benchmarks.video_vae`` (about 7 minutes on a 2-core CPU; the table is in docs/video.md).

The live-bytes count is what ``torch.cuda.max_memory_allocated`` would add for the decode's
tensors; it leaves out convolution workspaces and the caching allocator's slack (the memory
model's ``framework`` term).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

SIZES = ((480, 832, 81), (720, 1280, 33), (720, 1280, 81), (720, 1280, 129))


class LiveBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages alive at once while the mode is on (meta tensors too)."""

    def __init__(self) -> None:
        super().__init__()
        self.holders: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = self.peak = 0

    def _release(self, key: int) -> None:
        self.holders[key] -= 1
        if not self.holders[key]:
            del self.holders[key]
            self.live -= self.sizes.pop(key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                key = storage._cdata
                if key not in self.holders:
                    self.holders[key] = 0
                    self.sizes[key] = storage.nbytes()
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                self.holders[key] += 1
                weakref.finalize(tensor, self._release, key)
        return out


def meta_vae(diffusers_class: str) -> Any:
    import diffusers

    with torch.device("meta"):
        return getattr(diffusers, diffusers_class)().eval().to(torch.bfloat16)


def latent(height: int, width: int, frames: int) -> torch.Tensor:
    return torch.empty(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8, device="meta", dtype=torch.bfloat16)


def decode_peak_bytes(vae: Any, height: int, width: int, frames: int, *, tiled: bool = False) -> int:
    """Peak live bytes of one bf16 decode (the decoded clip included)."""
    vae.enable_tiling() if tiled else vae.disable_tiling()
    tracker = LiveBytes()
    with torch.inference_mode(), tracker:
        out = vae.decode(latent(height, width, frames), return_dict=False)[0]
        del out
    return tracker.peak


def decode_flops(vae: Any, height: int, width: int, frames: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    vae.disable_tiling()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        vae.decode(latent(height, width, frames), return_dict=False)
    return counter.get_total_flops()


def main() -> None:
    from profiles.costs.components import VIDEO_VAES

    gib = 2 ** 30
    print("| VAE | size | params | FLOPs / pixel-frame | peak untiled (measured / model) | peak tiled (measured / model) |")
    print("|---|---|---|---|---|---|")
    for name, spec in VIDEO_VAES.items():
        vae = meta_vae(name)
        params = sum(p.numel() for p in vae.parameters())
        for h, w, f in SIZES:
            flops = decode_flops(vae, h, w, f) / (h * w * f)
            full, tiled = decode_peak_bytes(vae, h, w, f), decode_peak_bytes(vae, h, w, f, tiled=True)
            print(f"| {name} | {w}×{h}×{f} | {params:,} | {flops:.3g} | {full / gib:.2f} / "
                  f"{spec.decode_working_bytes(h, w, 2, f) / gib:.2f} GiB | {tiled / gib:.2f} / "
                  f"{spec.decode_working_bytes(h, w, 2, f, tiled=True) / gib:.2f} GiB |")


if __name__ == "__main__":
    main()
