"""Exceptions for the whole toolkit.

Every error a user can cause is a :class:`PfplanError`; the CLI turns one into a single
line naming the file and field, and exit code 2. Each package owns one subclass::

    PfplanError
    ├── InputError            bad file, unknown name, wrong field (any package)
    ├── ProfilesError         profiles/: catalogs, topologies, profiles
    │   └── TopologyError
    ├── SimulatorError        simulator/ (defined there)
    │   └── PlanError
    ├── PlannerError          planner/ (defined there)
    └── RuntimeFailure        runtime/ (defined there; exit code 1 when a run fails)

:class:`Interrupted` (SIGINT, SIGTERM) is not a PfplanError but, like KeyboardInterrupt, a
BaseException: no ``except Exception`` on the way up may swallow it.
"""

from __future__ import annotations


class PfplanError(Exception):
    """Base of every error the toolkit raises on purpose."""

    exit_code: int = 2

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.file = file
        self.field = field
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ": ".join(part for part in (self.file, self.field) if part)
        text = f"{where}: {self.message}" if where else self.message
        return " ".join(text.split())


class InputError(PfplanError):
    """A file, name or value given by the user is not what was expected."""


class ProfilesError(PfplanError):
    """Errors of the profiles package (catalogs, topologies, profiles)."""


class TopologyError(ProfilesError):
    """A topology that parses but cannot describe a real cluster."""


class Interrupted(BaseException):
    """The user (SIGINT, Ctrl-C) or the system (SIGTERM) stopped the command: exit 128 + the signal.

    Raised by the CLI's signal handlers instead of KeyboardInterrupt, which typer turns into a
    silent exit 130 before the CLI could say anything."""

    def __init__(self, message: str, *, signum: int) -> None:
        self.message = message
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(message)

    def one_line(self) -> str:
        return " ".join(self.message.split())
