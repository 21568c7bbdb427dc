"""Every command's outputs: refused before any work if they cannot be written, written all or none.

A search or a run can take minutes; finding only afterwards that ``-o`` names a folder
nobody may write in wastes them, and an output path equal to an input path silently
replaces the input (``search --topology t.yaml -o t.yaml``). So each command calls
:func:`guard_outputs` first, with its outputs and inputs by option name, and refuses with
one line naming the option when an output

* is a directory, or its folder does not exist (or is not a folder),
* is the same file as one of the inputs, or as another output,
* cannot be written: a real probe (a temporary file made and removed in its folder), since
  ``os.access`` says yes to root even where the file system says no (``/proc``, read-only
  mounts).

Then it writes with :func:`write_outputs`: every file is staged beside its destination and
only when all were staged are they renamed into place, so a failure leaves none of them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel

from profiles.errors import InputError

PathLike = Path | str | None


def _named(paths: Mapping[str, PathLike] | Iterable[PathLike]) -> list[tuple[str, Path]]:
    """``{"--topology": "t.yaml", "--profile": None}`` → ``[("--topology", Path("t.yaml"))]``."""
    items = paths.items() if isinstance(paths, Mapping) else ((str(p), p) for p in paths)
    return [(name, Path(p)) for name, p in items if p is not None and str(p) != ""]


def _same(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        try:
            return os.path.samefile(a, b)
        except OSError:
            pass
    return a.resolve() == b.resolve()


def _probe(folder: Path) -> str | None:
    """Why nothing can be created in ``folder`` (None when a file could be)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".pfplan-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(tmp)
    return None


def check_output(path: Path | str, field: str | None = None) -> Path:
    """One output path: refuse a directory, a missing folder, or a folder that cannot take a file."""
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory; give a file name to write", file=str(path), field=field)
    folder = path.parent
    if not folder.exists():
        raise InputError(f"its directory {folder} does not exist (create it first)", file=str(path), field=field)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a directory", file=str(path), field=field)
    why = _probe(folder)
    if why is not None:
        raise InputError(f"cannot write in {folder} ({why})", file=str(path), field=field)
    return path


def guard_outputs(outputs: Mapping[str, PathLike], inputs: Mapping[str, PathLike] | Iterable[PathLike] = ()
                  ) -> None:
    """Refuse now, in one line naming the option, any output that could not be written or would
    overwrite an input or another output. ``outputs`` and ``inputs`` map option names to paths
    (None: not given; an input that is a shipped name rather than a file is skipped)."""
    named_inputs = [(name, p) for name, p in _named(inputs) if p.exists()]
    seen: list[tuple[str, Path]] = []
    for field, path in _named(outputs):
        for name, source in named_inputs:
            if _same(path, source):
                raise InputError(f"is also an input of this command ({name}); write the output elsewhere",
                                 file=str(path), field=field)
        for name, other in seen:
            if _same(path, other):
                raise InputError(f"is the same file as {name}; give each output its own file",
                                 file=str(path), field=field)
        check_output(path, field)
        seen.append((field, path))


def stage_file(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path`` (same file system, so a rename onto
    ``path`` is atomic), flushed to disk and with the permissions a plainly created file would
    get (mkstemp's are owner-only); the caller renames it into place or deletes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_outputs(files: Sequence[tuple[PathLike, str | bytes | BaseModel]]) -> None:
    """Write every file or none: stage each beside its destination, then rename them all into place.
    A None path is skipped (an output not asked for); a pydantic model is written as indented JSON."""
    staged: list[tuple[Path, Path]] = []
    placed: list[Path] = []
    files = [(p, d) for p, d in files if p is not None]
    try:
        for path, data in files:
            text = data.model_dump_json(indent=2) + "\n" if isinstance(data, BaseModel) else data
            staged.append((stage_file(Path(path), text), Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
            placed.append(path)
    except OSError as exc:
        for path in placed:
            path.unlink(missing_ok=True)
        raise InputError(f"cannot write ({exc.strerror or exc}); no output written",
                         file=str(exc.filename) if exc.filename else None) from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
