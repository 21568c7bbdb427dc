"""Where pfrun writes its image(s) and trace: checked before the run, written all-or-nothing after.

A run can take minutes; finding only afterwards that ``--out`` names a directory (or a
folder nobody may write in) wastes it and, written file by file, leaves half the outputs.
So :func:`check_output_path` refuses such a path before any rank starts (one line, exit 2),
and :func:`write_all` stages every output as a temporary file next to its destination
(:func:`profiles.loading.stage_file`, as every other output of the toolkit) and renames them
into place only when all were staged.
"""

from __future__ import annotations

import os
from pathlib import Path

from profiles.errors import InputError
from profiles.loading import stage_file
from runtime.errors import RuntimeFailure


def check_output_path(path: Path, field: str) -> None:
    """Refuse a directory, a parent that is a file, or a folder this process cannot write in."""
    if path.is_dir():
        raise InputError("is a directory; give a file name", file=str(path), field=field)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # write_all creates missing folders below the nearest existing one
    if not parent.is_dir():
        raise InputError(f"{parent} is not a directory", file=str(path), field=field)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write in {parent}", file=str(path), field=field)


def check_distinct(paths: dict[str, Path]) -> None:
    """Two outputs that name the same file would overwrite each other."""
    seen: dict[Path, str] = {}
    for field, path in paths.items():
        key = path.resolve()
        if key in seen:
            raise InputError(f"the same file as {seen[key]}", file=str(path), field=field)
        seen[key] = field


def write_all(files: list[tuple[Path, bytes]]) -> None:
    """Write every file or none: stage each as a temporary file, then rename them all into place."""
    staged: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    try:
        for path, data in files:
            staged.append((stage_file(path, data), path))
        for tmp, path in staged:
            os.replace(tmp, path)
            placed.append(path)
    except OSError as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        for path in placed:
            path.unlink(missing_ok=True)
        raise RuntimeFailure(f"the run finished but its outputs could not be written ({exc}); "
                             "no output written") from exc
