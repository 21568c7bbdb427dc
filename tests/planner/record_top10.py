"""Records the search's top 10 on pcie8 and h100-nvlink8 (a guard against unintended changes).

``python -m tests.planner.record_top10`` writes ``tests/planner/data/top10.json``; the test
``test_search_top10_recorded.py`` compares today's search with it. It was first recorded on
main at 17f39c7, before strategies and families became plug-ins (then named
``top10-before-plugins.json``), and re-recorded on branch r3-c for issue 13, whose costs
(whole-deployment memory, VAE and scheduler, communication priors, Ring merges, measured
collectives) change predictions on purpose; re-recorded in round 6 when tensor parallel got the
runtime's own all-reduce count per block kind (flux-dev: ``tensor8`` enters the top 10, the
other rows unchanged); re-recorded in round 10 when an all-to-all became one round of sends to every
peer at once (the rows with Ulysses degree 4 or 8 0.2-3.5 % faster, reordering four pairs of near ties:
flux-dev's ``ulysses8`` ahead of ``distrifusion8`` and ``ring2×ulysses4`` of ``distrifusion7``, hunyuan-dit's
``cfg2×ulysses4`` ahead of ``cfg2×pipefusion4`` and ``ulysses8`` of ``cfg2×pipefusion2×ring2``; the others
unchanged); re-recorded in round 13 when a share of the image (a PipeFusion patch, a sequence-parallel or
DistriFusion band) pays the embed its family's runtime adapter runs (``FamilySpec.patch_embed``: PixArt, SD3,
DiT and HunyuanDiT embed the whole latent for every share): PixArt-α and SD3 PipeFusion rows 0.1-4.4 % slower,
reordering SD3's ``pipefusion8`` behind ``cfg2×pipefusion2×ulysses2`` and PixArt-α's ``pipefusion7`` rows out of
the top 10; flux-dev (rows) unchanged; HunyuanDiT rows within 0.6 % (``cfg2×pipefusion2×ring2`` 0.6 % faster:
its later stage-0 hops meet less contention), swapping two near ties. Re-record only when a change means to. Since round 6 a shape below the
exactly ranked top K may be stopped early in a search (``"stopped": true``, its latency a lower
bound); the recording runs every simulation to its end (``exact_top=None``).
"""

from __future__ import annotations

import json
from pathlib import Path

from planner.search import SearchSettings, search
from profiles.costs.selection import cost_model_for
from profiles.catalog.models import load_model
from profiles.topology.graph import load_cluster

CASES = [("pcie8", "pixart-alpha", 2048, 20), ("pcie8", "sd3-medium", 1024, 28),
         ("h100-nvlink8", "flux-dev", 1024, 28), ("h100-nvlink8", "hunyuan-dit", 2048, 50)]
OUT = Path(__file__).parent / "data" / "top10.json"


def top10(topology: str, model_name: str, px: int, steps: int, *,
          exact_top: int | None = SearchSettings().exact_top) -> list[dict]:
    model, cluster = load_model(model_name), load_cluster(topology)
    cost = cost_model_for(model, cluster.gpu_of(cluster.devices[0]), None)
    result = search(model, cluster, cost, height_px=px, width_px=px, steps=steps,
                    settings=SearchSettings(exact_top=exact_top))
    return [{"label": c.plan.degrees.label(), "patches": c.plan.patches, "warmup": c.plan.warmup_steps,
             "stage_split": c.plan.stage_split, "placement": c.plan.placement,
             "latency_s": c.latency_s, "simulated": c.simulated, **({"stopped": True} if c.stopped else {})}
            for c in result.ranked[:10]]


def record() -> dict:
    return {f"{t}/{m}/{px}/{s}": top10(t, m, px, s, exact_top=None) for t, m, px, s in CASES}


if __name__ == "__main__":
    OUT.write_text(json.dumps(record(), indent=1) + "\n")
    print(f"wrote {OUT}")
