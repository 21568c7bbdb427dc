"""Shared command-line plumbing: one-line errors, exit codes, ``--debug``, JSON output.

Both ``pfplan`` (planner) and ``pfrun`` (runtime) are thin typer shells over the library;
this plumbing sits in the lowest package so that the runtime needs nothing from the planner. A
:class:`~profiles.errors.PfplanError` becomes one line on stderr and its exit code
(2 for bad input, 1 for a failed run); ``--debug`` anywhere on the line shows the traceback.

Two rules hold for every command here, in one place: a float option is finite (``--rate nan``
and ``--slo-s inf`` are usage errors, exit 2), and SIGTERM is handled like Ctrl-C: the command
stops, says ``interrupted`` in one line and exits 128 + the signal (130 for SIGINT, 143 for
SIGTERM); ``--debug`` adds where it was stopped.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import click
import typer
from rich.console import Console

from profiles.errors import Interrupted, PfplanError

try:  # typer >= 0.2x vendors its own copy of click; its exceptions are not click's
    from typer._click import exceptions as _vendored_click
except ImportError:  # pragma: no cover - older typer uses click itself
    _vendored_click = click.exceptions

USAGE_ERRORS = (click.ClickException, _vendored_click.ClickException)
EXITS = (click.exceptions.Exit, typer.Exit)
ABORTS = (click.exceptions.Abort, typer.Abort)

def _finite_number_options() -> None:
    """Make typer's float options refuse ``nan`` and ``inf`` (its number parser is pydantic's, which
    accepts them by default): the one place every command's float options are checked."""
    try:
        from typer import _adapters
    except ImportError:  # pragma: no cover - an older typer parses with click (checked in the tests)
        return
    build = getattr(_adapters, "_build_number_adapter", None)
    if build is None or getattr(build, "finite", False):
        return

    def finite_adapter(number_class: type, *, min: float | None, max: float | None,  # noqa: A002
                       clamp: bool | None) -> object:
        if number_class is not float or clamp:
            return build(number_class, min=min, max=max, clamp=clamp)
        from typing import Annotated

        from pydantic import Field, TypeAdapter

        return TypeAdapter(Annotated[float, Field(ge=min, le=max, allow_inf_nan=False)])

    finite_adapter.finite = True  # type: ignore[attr-defined]
    _adapters._build_number_adapter = finite_adapter


_finite_number_options()

err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
"""No emoji codes: a message is printed as written, and printing it imports nothing (rich loads its
emoji table lazily, on the first print, which is when a signal is most likely to land)."""
out_console = Console(highlight=False, emoji=False, width=None if sys.stdout.isatty() else 200)
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
    with warnings_as_lines(prog), _signals_interrupt():
        return _run(app, prog, args, debug)


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted("interrupted", signum=signum)


def _ignore_late_signals() -> None:
    """Once the command has ended (failed, stopped or done) a signal no longer interrupts it.

    A rank whose peer failed is told to stop (torchrun SIGTERMs the others) while it is
    printing its own error line; raising there would replace that line with a traceback.
    The command exits right after, so the signal is not lost, only not acted on twice."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is _raise_interrupted:
            signal.signal(sig, signal.SIG_IGN)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` where the command is, so ``finally`` blocks run
    (ranks are stopped, staged files removed) and the CLI can say so; a plain KeyboardInterrupt
    would be turned into a silent exit 130 by typer. Only the main thread may set handlers."""
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _raise_interrupted)
    except ValueError:  # not the main thread (an embedding program's worker): leave signals alone
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupted(prog: str, exc: BaseException, debug: bool) -> int:
    """One line for a stopped command (``--debug``: the traceback of where it was, first)."""
    if not isinstance(exc, Interrupted):
        exc = Interrupted("interrupted", signum=signal.SIGINT)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)  # where the signal found the command
        err_console.print(f"{prog}: {exc.one_line()} (signal {signal.Signals(exc.signum).name})", markup=False)
    else:
        err_console.print(f"{prog}: {exc.one_line()}", markup=False)
    return exc.exit_code


def _run(app: typer.Typer, prog: str, args: list[str], debug: bool) -> int:
    try:
        return _report(app, prog, args, debug)
    except Interrupted as exc:  # a signal in the few bytecodes before _ignore_late_signals ran
        _ignore_late_signals()
        return _interrupted(prog, exc, debug)


def _report(app: typer.Typer, prog: str, args: list[str], debug: bool) -> int:
    try:
        result = app(args=args, prog_name=prog, standalone_mode=False)
        _ignore_late_signals()
        return result if isinstance(result, int) else 0
    except (Interrupted, KeyboardInterrupt) as exc:
        _ignore_late_signals()
        return _interrupted(prog, exc, debug)
    except PfplanError as exc:
        _ignore_late_signals()
        if debug:
            raise
        err_console.print(f"{prog}: error: {exc.one_line()}", markup=False)
        return exc.exit_code
    except EXITS as exc:
        _ignore_late_signals()
        return exc.exit_code
    except USAGE_ERRORS as exc:
        _ignore_late_signals()
        if debug:
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: show its help, as click does
            exc.show()
            return exc.exit_code
        message = " ".join(exc.format_message().split())
        err_console.print(f"{prog}: error: {message} (see {prog} --help)", markup=False)
        return 2
    except ABORTS as exc:  # click turns a KeyboardInterrupt inside a prompt into Abort
        _ignore_late_signals()
        return _interrupted(prog, exc, debug)


def entry_point(app: typer.Typer, prog: str) -> Callable[[], None]:
    def main() -> None:
        code = run_app(app, prog)
        if code != 0:
            # A failed or interrupted command has written nothing and reaped its ranks; skip the
            # interpreter's finalisation (torch's C++ teardown takes seconds on a loaded machine),
            # so a stopped pfrun is gone within a second of saying so.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        sys.exit(code)
    return main
