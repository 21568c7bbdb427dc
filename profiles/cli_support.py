"""Shared command-line plumbing: one-line errors, exit codes, ``--debug``, JSON output.

Both ``pfplan`` (planner) and ``pfrun`` (runtime) are thin typer shells over the library;
this plumbing sits in the lowest package so that the runtime needs nothing from the planner. A
:class:`~profiles.errors.PfplanError` becomes one line on stderr and its exit code
(2 for bad input, 1 for a failed run); ``--debug`` anywhere on the line shows the traceback.
"""

from __future__ import annotations

import json
import sys
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import click
import typer
from rich.console import Console

from profiles.errors import PfplanError

try:  # typer >= 0.2x vendors its own copy of click; its exceptions are not click's
    from typer._click import exceptions as _vendored_click
except ImportError:  # pragma: no cover - older typer uses click itself
    _vendored_click = click.exceptions

USAGE_ERRORS = (click.ClickException, _vendored_click.ClickException)
EXITS = (click.exceptions.Exit, typer.Exit)
ABORTS = (click.exceptions.Abort, typer.Abort)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
"""Tables keep their columns when piped (rich would otherwise assume 80 columns)."""


def print_json(data: Any) -> None:
    """Machine-readable output on stdout (no colour, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def warnings_as_lines(prog: str = "pfplan") -> Iterator[None]:
    """Print each distinct warning raised inside as one ``prog: warning:`` line, once.

    A search simulates hundreds of plans; a profile that does not cover a shape would
    otherwise repeat the same two-line Python warning for each of them.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            seen: set[str] = set()
            for w in caught:
                if not issubclass(w.category, UserWarning) or issubclass(w.category, DeprecationWarning):
                    continue  # library housekeeping (resource, deprecation) is not the user's business
                text = " ".join(str(w.message).split())
                if text not in seen:
                    seen.add(text)
                    err_console.print(f"{prog}: warning: {text}", markup=False)


def run_app(app: typer.Typer, prog: str, argv: list[str] | None = None) -> int:
    """Run ``app`` and turn toolkit errors into one line and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args = [a for a in args if a != "--debug"]
    with warnings_as_lines(prog):
        return _run(app, prog, args, debug)


def _run(app: typer.Typer, prog: str, args: list[str], debug: bool) -> int:
    try:
        result = app(args=args, prog_name=prog, standalone_mode=False)
        return result if isinstance(result, int) else 0
    except PfplanError as exc:
        if debug:
            raise
        err_console.print(f"{prog}: error: {exc.one_line()}", markup=False)
        return exc.exit_code
    except EXITS as exc:
        return exc.exit_code
    except USAGE_ERRORS as exc:
        if debug:
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: show its help, as click does
            exc.show()
            return exc.exit_code
        message = " ".join(exc.format_message().split())
        err_console.print(f"{prog}: error: {message} (see {prog} --help)", markup=False)
        return 2
    except ABORTS:
        err_console.print(f"{prog}: interrupted", markup=False)
        return 130
    except KeyboardInterrupt:
        err_console.print(f"{prog}: interrupted", markup=False)
        return 130


def entry_point(app: typer.Typer, prog: str) -> Callable[[], None]:
    def main() -> None:
        sys.exit(run_app(app, prog))
    return main
