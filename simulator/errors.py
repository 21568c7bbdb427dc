"""Errors of the simulator package (plans that break the rules, impossible scenarios)."""

from __future__ import annotations

from profiles.errors import PfplanError


class SimulatorError(PfplanError):
    """Base of the simulator's errors."""


class PlanError(SimulatorError):
    """A parallel plan that breaks one or more rules; the message lists every violation."""
