"""The rooms stand on floors and imports only point down; no module imports itself round a circle.

Floors, bottom up (docs/architecture.md draws them):

    profiles    what is true about models, GPUs, links and costs (no torch)
    simulator   what would happen if we ran plan X (no torch)
    runtime     run it (torch, diffusers)
    profiler    measure models and links through the runtime's own loop (torch)
    planner     which plan to run, the pfplan command (no torch at import)
    benchmarks  timed runs of everything, by hand

A package may import the packages below it, never one above, with one more rule: the
planner never imports the runtime (it runs pfrun as a user does), only the profiler, and
that inside the `pfplan profile` commands. Every import statement counts, at the top of a
module or inside a function or an ``if TYPE_CHECKING`` block: the check reads the source
with ``ast``. The light rooms must also import fast and without torch: a fresh
interpreter imports them and the test looks at ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from tests.conftest import ROOT

FLOORS = ("profiles", "simulator", "runtime", "profiler", "planner", "benchmarks")
NEVER = {("planner", "runtime")}
"""Pairs that skip floors and are still forbidden."""
LIGHT_ROOMS = ("profiles", "simulator")
LIGHT_MODULES = ["planner.cli", "planner.search", "planner.report"]


def modules_of(package: str) -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}.")
                  if not m.name.endswith("__main__"))


def module_path(name: str) -> Path:
    path = ROOT / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports_of(path: Path, own: str) -> set[tuple[str, int]]:
    """Every absolute (and resolved relative) import in a file, with its line."""
    found = set()
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name, node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add((base, node.lineno))
            found |= {(f"{base}.{alias.name}", node.lineno) for alias in node.names}
    return found


def project_modules() -> set[str]:
    return {name for package in FLOORS for name in [package, *modules_of(package)]}


def floor(name: str) -> int:
    return FLOORS.index(name.split(".")[0])


def test_imports_only_point_down_a_floor():
    offences = []
    for package in FLOORS:
        for name in modules_of(package):
            for target, line in sorted(imports_of(module_path(name), name)):
                top = target.split(".")[0]
                if top not in FLOORS or top == package:
                    continue
                if floor(target) > floor(name) or (package, top) in NEVER:
                    offences.append(f"{module_path(name).relative_to(ROOT)}:{line} imports {target}")
    assert not offences, f"imports that run up a floor (or planner → runtime): {sorted(set(offences))}"


def import_graph() -> nx.DiGraph:
    known = project_modules()
    graph = nx.DiGraph()
    for name in known:
        graph.add_node(name)
        for target, _ in imports_of(module_path(name), name):
            if target in known and target != name and not name.startswith(f"{target}."):
                graph.add_edge(name, target)
    return graph


def test_no_module_imports_itself_round_a_circle():
    circles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert not circles, f"import circles: {circles}"


def test_light_rooms_never_name_torch():
    offences = [f"{module_path(name).relative_to(ROOT)}:{line} imports {target}"
                for package in LIGHT_ROOMS for name in modules_of(package)
                for target, line in sorted(imports_of(module_path(name), name))
                if target.split(".")[0] in ("torch", "diffusers", "transformers", "accelerate")]
    assert not offences, f"profiles/ and simulator/ stay torch-free: {offences}"


def test_light_modules_import_without_torch_or_diffusers():
    names = LIGHT_MODULES + [n for p in LIGHT_ROOMS for n in modules_of(p)]
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}:\n"
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


def test_the_check_sees_imports_inside_functions_and_relative_ones(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text("def f():\n    from planner.cli import app\n    import runtime.cli\nfrom . import x\n")
    found = imports_of(sample, "simulator.strategies.m")
    assert {("planner.cli", 2), ("planner.cli.app", 2), ("runtime.cli", 3), ("simulator.strategies", 4),
            ("simulator.strategies.x", 4)} <= found


@pytest.mark.parametrize("package", FLOORS)
def test_every_floor_exists(package):
    assert (ROOT / package / "__init__.py").is_file()
