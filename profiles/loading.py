"""Reading and writing the toolkit's files with errors a user can act on.

Every format is a pydantic model; this module turns YAML/JSON syntax errors and pydantic
validation errors into one :class:`InputError` line naming the file, the field path and
what was expected. Outputs are written atomically (temp file + rename) so an interrupted
command never leaves a half-written plan or profile behind.
"""

from __future__ import annotations

import difflib
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from profiles.errors import InputError
from profiles.output_guard import check_output, stage_file  # noqa: F401 - stage_file: kept importable here

M = TypeVar("M", bound=BaseModel)


MAX_FILE_BYTES = 64 * 2**20
"""The largest input file read (64 MiB: a search result over thousands of plans is a few MB)."""

ECHO_CHARS = 60
"""An error quotes at most this many characters of a value, never a whole file's text."""


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.safe_load`` without anchors and aliases: no format of the toolkit uses them, and an
    alias "bomb" (a few lines that expand to gigabytes when a consumer walks or copies the
    document) is refused when it is read, not when a rank runs out of memory."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 - PyYAML's signature
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "anchors and aliases (&name, *name) are not allowed", event.start_mark)
        return super().compose_node(parent, index)


def read_document(path: Path) -> Any:
    """Parse a YAML or JSON file (by suffix; YAML otherwise, which also reads JSON).

    Refused with one line: a file over :data:`MAX_FILE_BYTES`, YAML anchors/aliases, bad syntax."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"the file is {size / 2**20:.0f} MiB, more than the {MAX_FILE_BYTES // 2**20} MiB "
                             "an input may be", file=str(path))
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a file", file=str(path)) from None
    except UnicodeDecodeError:
        raise InputError("not a text file (expected UTF-8 YAML or JSON)", file=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=str(path)) from None
    try:
        if Path(path).suffix == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                         file=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = (getattr(exc, "problem", None) or str(exc).splitlines()[0])[:ECHO_CHARS]
        raise InputError(f"invalid YAML{where}: {problem}", file=str(path)) from None


def field_path(loc: tuple[Any, ...]) -> str:
    """``('nodes', 0, 'gpu')`` → ``nodes[0].gpu``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (``list[Switch] | None`` → ``[Switch]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed where ``loc`` points (list indices and dict keys are skipped)."""
    current = cls
    for part in loc[:-1]:
        if isinstance(part, str) and part in current.model_fields:
            inner = _models_in(current.model_fields[part].annotation)
            if not inner:
                return []
            current = inner[0]
    return list(current.model_fields)


def validation_error(exc: ValidationError, file: str | None, cls: type[BaseModel] | None = None) -> InputError:
    """The first pydantic error as one line (and how many more there were)."""
    errors = exc.errors()
    # A misspelt key shows up twice: as an unknown field and as a missing one; name the typo.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        allowed = fields_at(cls, first["loc"]) if cls is not None else []
        message = f"unknown field; {suggest(str(first['loc'][-1]), allowed)}" if allowed else "unknown field"
    elif first["type"] == "missing":
        message = "required field is missing"
    elif first["loc"] == ("schema_version",) and first["type"] == "literal_error":
        message = f"unsupported version; this pfplan reads {first['msg'].removeprefix('Input should be ')}"
    message = message.removeprefix("Value error, ")
    got = first.get("input")
    if first["type"] not in ("missing", "extra_forbidden") and not isinstance(got, (dict, list)):
        message += f" (got {echo(got)})"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InputError(message, file=file, field=field_path(first["loc"]) or None)


def echo(value: Any) -> str:
    """``repr(value)``, cut to :data:`ECHO_CHARS` characters (an error quotes a value, not a file)."""
    text = repr(value)
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"


def parse_document(cls: type[M], data: Any, file: str | None = None) -> M:
    """Validate already-parsed data into ``cls`` with a one-line error."""
    if data is None:
        raise InputError("the file is empty; expected a mapping of fields", file=file)
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping of fields at the top level, got a {type(data).__name__}", file=file)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, file, cls) from None


def load_model_file(cls: type[M], path: Path | str) -> M:
    """Read and validate one file into the pydantic model ``cls``."""
    return parse_document(cls, read_document(Path(path)), file=str(path))


def suggest(name: str, choices: list[str]) -> str:
    """`` (did you mean 'pcie8'?)`` or the list of valid names."""
    prefixed = sorted(c for c in choices if c.startswith(name) or name.startswith(c))
    close = prefixed[:1] or difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]!r}? (choices: {', '.join(sorted(choices))})"
    return f"choices: {', '.join(sorted(choices))}"


def resolve_shipped(name_or_path: str, shipped_dir: Path, kind: str,
                    suffixes: tuple[str, ...] = (".yaml", ".yml", ".json")) -> Path:
    """A path that exists, else a shipped file named ``name`` (with or without suffix)."""
    candidate = Path(name_or_path)
    if candidate.exists():
        return candidate
    stem = candidate.name
    for suffix in suffixes:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    for suffix in suffixes:
        shipped = shipped_dir / f"{stem}{suffix}"
        if shipped.exists():
            return shipped
    names = sorted({p.stem for p in shipped_dir.iterdir() if p.suffix in suffixes})
    raise InputError(f"unknown {kind} {name_or_path!r}: not a file and not a shipped {kind}; "
                     f"{suggest(stem, names)}")


def check_writable(path: Path | str) -> Path:
    """Fail now, in one line, if ``path`` cannot take an output file (before long work starts);
    :func:`profiles.output_guard.check_output` (``guard_outputs`` also compares outputs with inputs)."""
    return check_output(path)


def write_atomic(path: Path | str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    path = check_writable(path)
    try:
        tmp = stage_file(path, data)
    except OSError as exc:
        raise InputError(f"cannot write ({exc.strerror})", file=str(path)) from None
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """:func:`write_atomic` for binary data (images, tensors)."""
    write_atomic(path, data)


def write_model_json(path: Path | str, model: BaseModel) -> None:
    """Atomically write a pydantic model as indented JSON."""
    write_atomic(path, model.model_dump_json(indent=2) + "\n")
