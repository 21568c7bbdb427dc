"""Errors of the planner package."""

from __future__ import annotations

from profiles.errors import PfplanError


class PlannerError(PfplanError):
    """Base of the planner's errors (e.g. no plan fits the cluster)."""
