"""Dependencies point one way: planner → simulator → profiles, runtime → simulator → profiles;
torch only where models run. Neither planner nor runtime imports the other.

The planner and simulator must import fast and work without torch or diffusers, so a fresh
interpreter imports them and the test looks at ``sys.modules``. The package direction is
checked on the source: every import statement (top level or inside a function) of every
module is read with ``ast``.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

FORBIDDEN = {
    "profiles": {"simulator", "planner", "runtime"},
    "simulator": {"planner", "runtime"},
    "runtime": {"planner"},
    "planner": {"runtime"},
}
ALLOWED = {
    # The profiler measures the runtime's own VAE decode and per-step loop, so that the
    # overheads it records are those pfrun really pays; it imports them inside the
    # measuring functions only (no import at module level, so no cycle).
    ("profiles/profiler_extras.py", "runtime"),
    ("profiles/profiler_compute.py", "runtime"),  # builds models through runtime.model_build and the family adapters
}
LIGHT_MODULES = ["planner.cli", "profiles.models", "profiles.topology_graph", "profiles.analytic",
                 *sorted(f"simulator.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "simulator")])
                         if m.name != "__main__")]


def test_planner_and_simulator_import_without_torch_or_diffusers():
    code = ("import importlib, json, sys\n"
            f"for name in {LIGHT_MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "    heavy = sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules)\n"
            "    if heavy:\n"
            "        print(json.dumps([name, heavy])); break\n"
            "else:\n"
            "    print(json.dumps(None))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    culprit = json.loads(proc.stdout.strip().splitlines()[-1])
    assert culprit is None, f"importing {culprit[0]} pulls in {culprit[1]}; import them inside the function that runs a model"


def imported_packages(path) -> set[tuple[str, int]]:
    """Top-level package of every absolute import in a file, with its line."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_do_not_import_upward(package):
    offences = [f"{path.relative_to(ROOT)}:{line} imports {target}"
                for path in sorted((ROOT / package).rglob("*.py"))
                for target, line in sorted(imported_packages(path))
                if target in FORBIDDEN[package] and (str(path.relative_to(ROOT)), target) not in ALLOWED]
    assert not offences, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {offences}"


def test_the_ast_check_sees_imports_inside_functions(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from planner.cli import app\n    import runtime.cli\n")
    assert imported_packages(sample) == {("planner", 2), ("runtime", 3)}
