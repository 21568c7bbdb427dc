"""A topology's communication block: defaults, bounds, and the one line search and simulate print."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from profiles.topology.format import Communication
from profiles.topology.graph import load_cluster


def test_the_default_is_ideal_and_says_so():
    assert (Communication().bandwidth_efficiency, Communication().overlap_efficiency) == (1.0, 1.0)
    assert Communication().describe() == "communication: ideal (full link bandwidth, perfect overlap; not calibrated)"
    # a shipped box nobody calibrated now carries priors, and says so (issue 13)
    assert "PRIORS" in load_cluster("h100-nvlink8").topology.communication.describe(brief=True)


@pytest.mark.parametrize("field, value", [("bandwidth_efficiency", 0.0), ("bandwidth_efficiency", 1.5),
                                          ("overlap_efficiency", -0.1), ("overlap_efficiency", 1.01)])
def test_efficiencies_outside_their_range_are_refused(field, value):
    with pytest.raises(ValidationError):
        Communication(**{field: value})


def test_the_footer_line_keeps_the_sources_first_clause_and_the_full_line_all_of_it():
    comm = load_cluster("pcie8").topology.communication
    brief, full = comm.describe(brief=True), comm.describe()
    assert brief.startswith(f"communication: transfers at {comm.bandwidth_efficiency:g} × link bandwidth, "
                            f"overlapped transfers hide {comm.overlap_efficiency:g} of their time (")
    assert "(Borrowed, not measured on this box; `pfplan topology show` for the rest)" in brief
    assert " ".join(comm.source.split()) in full and len(full) > len(brief)
    long = Communication(overlap_efficiency=0.5, source="x" * 300).describe(brief=True)
    assert "x" * 99 + "…" in long and "x" * 100 not in long
