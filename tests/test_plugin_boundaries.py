"""One strategy, one place; one family, one place: the source says so, not only the docs.

A strategy's name may appear in its simulator module, its runtime module and at most one
registration line; a family's name is branched on only inside its own modules. These
greps are what a new contributor would run to see how many files a change touches.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("profiles", "simulator", "planner", "runtime", "profiler")


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES if (ROOT / package).is_dir() for p in (ROOT / package).rglob("*.py"))


def files_matching(pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return [str(p.relative_to(ROOT)) for p in sources() if regex.search(p.read_text())]


@pytest.mark.parametrize("axis, pattern", [
    ("distrifusion", r"distrifusion"),
    # ring as an axis name: quoted, an attribute, a keyword or a degree label; not "string" or "during"
    ("ring", r"[\"']ring[\"']|\.ring\b|\bring=|\bring\(|\bring\d"),
])
def test_a_strategy_is_named_in_at_most_three_source_files(axis, pattern):
    found = files_matching(pattern)
    assert len(found) <= 3, f"{axis} is named in {len(found)} source files: {found}"
    assert f"simulator/strategies/{axis}.py" in found


FAMILY_BRANCH = re.compile(r"family\s*(==|!=|in\b|not in\b)|\.family\s*(==|!=|in\b|not in\b)")


def test_no_family_branches_outside_the_family_modules():
    offences = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
                for p in sources() if "families" not in p.parts
                for n, line in enumerate(p.read_text().splitlines(), 1) if FAMILY_BRANCH.search(line)]
    assert not offences, "branch on a family inside its own module (profiles/families, runtime/families):\n" + \
        "\n".join(offences)
