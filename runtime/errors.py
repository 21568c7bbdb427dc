"""Errors of the runtime package."""

from __future__ import annotations

from profiles.errors import PfplanError


class RuntimeFailure(PfplanError):
    """A run that started and failed (a rank raised, died or timed out): exit code 1."""

    exit_code = 1


class UnrunnablePlan(PfplanError):
    """A valid plan that ``pfrun`` cannot execute (yet): exit code 2, with the reason."""
