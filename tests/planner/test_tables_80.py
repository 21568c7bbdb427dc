"""Terminal tables at 80 columns: no line longer, no number split across lines, COLUMNS honoured when piped."""

from __future__ import annotations

import json

import pytest

from planner.search_format import SearchReport, why_text
from planner.tables import Column, render
from rich.console import Console


@pytest.fixture
def search80(pfplan, tmp_path, monkeypatch):
    results = tmp_path / "search.json"
    monkeypatch.setenv("COLUMNS", "80")
    result = pfplan("search", "--topology", "pcie8", "--model", "pixart-alpha", "--resolution", "1024",
                    "--results", results)
    assert result.code == 0, result.err
    return result.out, SearchReport.model_validate(json.loads(results.read_text()))


def test_search_at_80_columns(search80):
    out, report = search80
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    tokens = set(out.split())
    for rec in report.candidates[:10]:  # every number of the table, whole on one line
        assert f"{rec.latency_s:.3g}" in tokens
        assert f"{rec.speedup_over_one_gpu:.2f}×" in tokens
        assert rec.label in tokens
    assert "why it lost" in out and "chosen (the plan written)" in " ".join(out.split())


def test_columns_honoured_when_piped(pfplan, monkeypatch):
    monkeypatch.setenv("COLUMNS", "140")
    wide = pfplan("search", "--topology", "cpu2", "--model", "pixart-tiny", "--steps", "4").out
    assert max(len(line) for line in wide.splitlines()) <= 140
    assert "placement" in wide  # room for more columns than at 80
    monkeypatch.setenv("COLUMNS", "80")
    narrow = pfplan("search", "--topology", "cpu2", "--model", "pixart-tiny", "--steps", "4").out
    assert max(len(line) for line in narrow.splitlines()) <= 80


def test_render_drops_low_priority_columns_never_folds_numbers():
    cols = [Column("name"), Column("value"), Column("extra", priority=5), Column("note", wrap=True)]
    rows = [["cfg2×pipefusion4", "3.11", "x" * 30, "a long explanation with 12.5 s in it " * 2]]
    console = Console(width=60, record=True, file=open("/dev/null", "w"))
    console.print(render(cols, rows, limit=60))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "3.11" in text.split() and "12.5" in text.split() and "extra" not in text.splitlines()[0]
    assert "left out to fit 60 columns: extra" in " ".join(text.split())


def test_chosen_means_the_plan_written():
    from tests.planner.test_capacity import cand
    from planner.search import SearchResult
    from planner.search_format import search_report
    from planner.report_figures import pareto_figure
    from simulator.plan import Degrees

    result = SearchResult([cand(Degrees(pipefusion=2), 1.0), cand(Degrees(cfg=2), 1.2),
                           cand(Degrees(), 2.0)], [], 2.0)
    report = search_report(result, model="pixart-alpha", height_px=1024, width_px=1024, steps=20, topology="t",
                           objective="latency", cost_model="analytic:l40")
    report = report.model_copy(update={"chosen_rank": 3})
    assert report.chosen.rank == 3
    texts = [why_text(r, report) for r in report.candidates]
    assert texts[0].startswith("fastest, not written") and texts[2] == "chosen (the plan written)"
    assert sum("chosen" in t for t in texts) == 1
    star = pareto_figure(report).data[-1]
    assert list(star.x) == [1] and list(star.y) == [2.0] and "serial" in star.name


def test_bad_resolutions_are_one_line(pfplan):
    for args in (["--resolutions", "256,abc"], ["--resolutions", "256", "--resolution", "256"],
                 ["--resolutions", "0"]):
        bad = pfplan("search", "--topology", "cpu2", "--model", "pixart-tiny", *args)
        assert bad.code == 2 and bad.err.count("\n") == 1 and "--resolutions" in bad.err, (args, bad.err)
