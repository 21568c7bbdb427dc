"""``python -m benchmarks [NAME ...]``: run every benchmark script in ``benchmarks/`` in turn.

The scripts are plain programs (each with its own options and its own place in ``docs/``),
so each runs as its own process, from the repository root, with its default options: a
crash in one does not stop the others, and their imports do not leak into each other.
Names select scripts (``search_speed`` or ``search_speed.py``); no names means all of them,
in alphabetical order. The exit status is 1 when any script failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def scripts() -> list[Path]:
    """Every benchmark script: the ``*.py`` files of this folder except the package's own."""
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_"))


def select(names: list[str]) -> list[Path]:
    available = {p.stem: p for p in scripts()}
    unknown = [n for n in names if n.removesuffix(".py") not in available]
    if unknown:
        raise SystemExit(f"benchmarks: unknown benchmark {', '.join(unknown)}; "
                         f"benchmarks: {', '.join(available)}")
    return [available[n.removesuffix(".py")] for n in names] if names else list(available.values())


def run(script: Path) -> tuple[int, float]:
    print(f"\n=== {script.relative_to(ROOT)} ===", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    code = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env).returncode
    return code, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    chosen = select(sys.argv[1:] if argv is None else argv)
    results = [(script.stem, *run(script)) for script in chosen]
    print("\n=== summary ===")
    for name, code, wall in results:
        print(f"{name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {wall:.1f} s")
    return 1 if any(code for _, code, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
