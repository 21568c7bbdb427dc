"""The search table's "runnable" column appears only when a listed plan is one pfrun refuses.

Why: since issue 11 pfrun runs every shape the search enumerates for the shipped families, so a
column of "yes" says nothing; it must still appear (with the refused row's "no") when a plan is
refused, e.g. for a family whose adapter lacks a capability (``runtime_lacks``)."""

from __future__ import annotations

from planner.search_format import SearchReport
from planner.search_table import print_search_table


def test_runnable_column_only_when_a_listed_plan_is_refused(pfplan, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "240")  # wide: at 80 columns the runnable column is dropped first anyway
    results = tmp_path / "search.json"
    assert pfplan("search", "--topology", "cpu2", "--model", "pixart-tiny", "--steps", "4", "--top", "3",
                  "--results", results).code == 0
    report = SearchReport.model_validate_json(results.read_text())
    assert all(c.runnable_reason is None for c in report.candidates[:3])
    print_search_table(report, 3)
    assert "runnable" not in capsys.readouterr().out
    report.candidates[1].runnable_reason = "degrees.ring: a stand-in refusal"
    print_search_table(report, 3)
    shown = capsys.readouterr().out
    assert "runnable" in shown and " no " in shown
