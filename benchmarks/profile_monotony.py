"""How many of each shipped profile's layer readings the cost model lowers, and by how much.

Why: :mod:`profiles.costs.profiled` lowers a reading to the least time measured at as many
queries and keys or more (load only ever slows a timing). This counts, per shipped profile,
the readings priced below their own median at their own shape, and the lowest priced /
measured ratio: how noisy a profile is, and how much the rule changes its prices
(docs/fidelity.md, round 12). Prints; writes nothing. Run from the repository root::

    python benchmarks/profile_monotony.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from profiles.costs.cost_model import EMBED, FINAL  # noqa: E402
from profiles.costs.profile_format import Profile, load_profile  # noqa: E402
from profiles.costs.profiled import Surface  # noqa: E402

PROFILES = ROOT / "profiles" / "data" / "profiles"


def lowered(profile: Profile) -> tuple[int, int, float]:
    """(readings lowered, readings priced at their own shape, least priced / measured ratio)."""
    count = priced = 0
    least = 1.0
    for kind, timings in profile.layers.items():
        whole = kind in (EMBED, FINAL)
        groups: dict[tuple[int, int], list] = {}
        for t in timings:
            groups.setdefault((t.batch, t.tensor_shard), []).append(t)
        for rows in groups.values():
            surface = Surface.of(rows, ignore_kv=whole)
            for t in rows:
                if t.query_tokens <= 0:
                    continue
                value, _ = surface.log_time(t.query_tokens, 0 if whole else t.kv_tokens)
                if value is None:
                    continue
                priced += 1
                ratio = math.exp(value) / t.median_s
                if ratio < 1 - 1e-9:
                    count += 1
                    least = min(least, ratio)
    return count, priced, least


def main() -> int:
    print("| profile | kind | readings lowered | least priced / measured |\n|---|---|---|---|")
    for path in sorted(PROFILES.glob("*.json")):
        profile = load_profile(path)
        if not profile.layers:
            continue  # a links profile
        count, priced, least = lowered(profile)
        print(f"| `{path.stem}` | {profile.provenance.kind} | {count} of {priced} | {least:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
