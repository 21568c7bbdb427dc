"""Shared test helpers: run the real CLIs in-process and capture what a user would see."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def pfplan(capsys):
    """Run ``pfplan ARGS`` in-process; returns exit code, stdout and stderr."""
    from planner.cli import app
    from profiles.cli_support import run_app

    def run(*args: str) -> CliResult:
        code = run_app(app, "pfplan", [str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)
    return run


@pytest.fixture
def pfrun(capsys):
    """Run ``pfrun ARGS`` in-process."""
    from profiles.cli_support import run_app
    from runtime.cli import app

    def run(*args: str) -> CliResult:
        code = run_app(app, "pfrun", [str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)
    return run


def run_subprocess(module: str, *args: str, timeout: float = 300, env: dict | None = None) -> CliResult:
    """Run ``python -m module ARGS`` as a user would (a fresh process)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=full_env)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
