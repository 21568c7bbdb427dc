"""Reading and writing plan files, with the one rule for the paths inside them.

A plan names its model and its topology: a shipped name (``pixart-alpha``, ``pcie8``) or a
path. **A relative path inside a plan is relative to the plan file's folder** — never to the
working directory of whoever reads it — so ``pfplan plan validate``, ``pfplan simulate --plan``
and ``pfrun --plan`` read the same files from any directory. A value that looks like a path
(it holds a ``/`` or ends in ``.yaml``, ``.yml`` or ``.json``) but names nothing there is an
error naming the plan and the field; a bare name with no file beside the plan is a shipped
name. Writers (``search -o``, ``plan new/import -o``) store paths relative to the plan they
write (:func:`paths_relative_to`), so a plan keeps working when its folder moves.
"""

from __future__ import annotations

import os
from pathlib import Path

from profiles.catalog.models import ModelPreset
from profiles.errors import InputError, PfplanError
from profiles.loading import load_model_file
from simulator.plan import ParallelPlan

PATH_FIELDS = ("model", "topology")
"""The plan fields that may hold a path."""

PATH_SUFFIXES = (".yaml", ".yml", ".json")


def looks_like_path(value: str) -> bool:
    return "/" in value or os.sep in value or value.endswith(PATH_SUFFIXES)


def resolve_plan_paths(plan: ParallelPlan, plan_file: Path | str) -> ParallelPlan:
    """``plan`` with its relative model/topology paths made relative to ``plan_file``'s folder."""
    folder = Path(plan_file).parent
    updates: dict[str, str] = {}
    for field in PATH_FIELDS:
        value = getattr(plan, field)
        if not value or Path(value).is_absolute():
            continue
        beside = folder / value
        if beside.exists():
            updates[field] = os.path.normpath(beside)
        elif looks_like_path(value):
            raise InputError(f"no file {value!r} next to the plan (a relative path in a plan is read from the "
                             "plan file's folder)", file=str(plan_file), field=field)
    return plan.model_copy(update=updates) if updates else plan


def load_plan(path: Path | str) -> ParallelPlan:
    """Read and validate a plan file; its relative paths resolved by the one rule (module docstring)."""
    return resolve_plan_paths(load_model_file(ParallelPlan, path), path)


def plan_model(plan: ParallelPlan, *, file: str | None = None) -> ModelPreset:
    """The plan's model preset, generating the plan's ``frames``; a bad name or file is reported against
    the plan's ``model`` field, a frame count the model cannot make against ``frames``."""
    from profiles.catalog.models import load_model

    try:
        preset = load_model(plan.model)
    except PfplanError as exc:
        raise InputError(exc.message, file=exc.file or file, field=exc.field or "model") from None
    try:
        return preset.with_frames(plan.frames)
    except InputError as exc:
        raise InputError(exc.message, file=file, field="frames") from None


def paths_relative_to(plan: ParallelPlan, plan_file: Path | str | None) -> ParallelPlan:
    """``plan`` about to be written to ``plan_file``: model/topology paths the writer was given
    (relative to its working directory) rewritten relative to the plan file's folder."""
    if plan_file is None:
        return plan
    folder = Path(plan_file).parent.resolve()
    updates: dict[str, str] = {}
    for field in PATH_FIELDS:
        value = getattr(plan, field)
        if not value or Path(value).is_absolute() or not Path(value).exists():
            continue  # a shipped name, or already absolute
        if looks_like_path(value) or Path(value).is_dir():  # a file, or a local diffusers folder
            updates[field] = os.path.relpath(Path(value).resolve(), folder)
    return plan.model_copy(update=updates) if updates else plan
