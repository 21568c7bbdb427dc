"""Probe: is diffusers 0.42's own context parallelism usable by pfrun on CPU (gloo)?

Why: issue 11 asks to prefer diffusers' ``ContextParallelConfig`` / ``enable_parallelism`` /
Flux's ``_cp_plan`` where they are exact against serial. This runs flux-tiny's whole forward
once serially and once under ``enable_parallelism`` on 2 gloo ranks, and prints each rank's max
abs difference or the error it raised. ``--patch-device-count`` replaces
``torch.accelerator.device_count`` (0 on CPU, which ``enable_parallelism`` divides by) with 1,
to see what fails after that. Results are in docs/runtime.md, "Joint attention".

    python -m benchmarks.runtime_diffusers_cp_probe ulysses|ring [--patch-device-count]
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist

from profiles.catalog.models import load_model
from runtime.families.flux import flux_image_ids, pack_flux
from runtime.model_build import build_transformer


def probe(rank: int, world: int, kind: str, patch: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    preset = load_model("flux-tiny")
    model = build_transformer(preset)
    gen = torch.Generator().manual_seed(0)
    latent = torch.randn(1, preset.arch.latent_channels, 16, 16, generator=gen)
    embeds = torch.randn(1, preset.text_tokens, preset.text_embed_dim, generator=gen)
    pooled = torch.randn(1, preset.pooled_embed_dim, generator=gen)
    kw = dict(hidden_states=pack_flux(latent), encoder_hidden_states=embeds, pooled_projections=pooled,
              timestep=torch.tensor([0.5]), txt_ids=torch.zeros(embeds.shape[1], 3), img_ids=flux_image_ids(8, 8),
              return_dict=False)
    if preset.config.get("guidance_embeds"):
        kw["guidance"] = torch.tensor([3.5])
    with torch.no_grad():
        reference = model(**kw)[0]
        from diffusers import ContextParallelConfig

        if patch:
            torch.accelerator.device_count = lambda: 1  # type: ignore[assignment]
        config = ContextParallelConfig(**{f"{kind}_degree": world})
        try:
            model.enable_parallelism(config=config)
            out = model(**kw)[0]
            print(f"rank {rank} {kind}: max abs diff from serial {float((out - reference).abs().max()):.3g}")
        except Exception as exc:  # noqa: BLE001 - the probe reports whatever diffusers raises
            print(f"rank {rank} {kind}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["ulysses", "ring"])
    parser.add_argument("--patch-device-count", action="store_true")
    args = parser.parse_args()
    import torch.multiprocessing as mp

    mp.spawn(probe, args=(2, args.kind, args.patch_device_count), nprocs=2)


if __name__ == "__main__":
    main()
