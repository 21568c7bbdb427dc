"""Every report opened in real headless Chromium: plotly renders and every panel draws data.

The page's own script writes a render summary into ``#render-summary`` once plotly has drawn
(per panel: plotly traces, SVG trace groups drawn, and marks: points, bar paths, lines,
heatmap images, table cells). Chromium runs with ``--virtual-time-budget`` so the page's
timers finish before ``--dump-dom`` prints the DOM. Chromium is Debian's package, installed
by ``make setup`` when missing; without it this test fails (set PFPLAN_NO_BROWSER=1 to skip).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from planner.report import panel_names

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("PFPLAN_NO_BROWSER") == "1":
            pytest.skip("PFPLAN_NO_BROWSER=1")
        pytest.fail("chromium not found: `make setup` installs Debian's chromium (apt-get install -y chromium)")
    return found


def rendered(page: Path) -> dict[str, dict[str, int]]:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=30000",
                               "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True, timeout=180)
    match = re.search(r'<pre id="render-summary"[^>]*>(.*?)</pre>', proc.stdout, re.S)
    assert match and match.group(1), f"no render summary (chromium rc {proc.returncode}): {proc.stderr[-500:]}"
    return json.loads(html.unescape(match.group(1)))


def check_every_panel_drew(page: Path, expected: set[str]) -> None:
    names = panel_names(page.read_text(encoding="utf-8"))
    assert set(names) == expected
    summary = rendered(page)
    assert set(summary) == expected
    for name, panel in summary.items():
        assert panel["traces"] >= 1 and panel["drawn_traces"] >= 1 and panel["marks"] >= 1, (name, panel)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A search (+ capacity), a sweep and a plan report, written through the CLI."""
    from planner.cli import app
    from profiles.cli_support import run_app

    out = tmp_path_factory.mktemp("reports")

    def pfplan(*args):
        assert run_app(app, "pfplan", [str(a) for a in args]) == 0, args

    common = ["--topology", "cpu2", "--model", "pixart-tiny", "--steps", "4"]
    pfplan("search", *common, "-o", out / "plan.json", "--results", out / "search.json")
    pfplan("capacity", *common, "--rate", "5", "--slo-s", "1", "--requests", "300", "--results", out / "cap.json")
    pfplan("search", *common, "--resolutions", "256,512", "-o", out / "sweep.json", "--results", out / "sweep-all.json")
    pfplan("report", out / "search.json", "--capacity", out / "cap.json", "-o", out / "search.html")
    pfplan("report", out / "sweep-all.json", "-o", out / "sweep.html")
    pfplan("report", out / "plan.json", "-o", out / "plan.html")
    return out


def test_search_report_with_capacity_draws_every_panel(reports):
    check_every_panel_drew(reports / "search.html", {"pareto", "breakdown", "top", "memory", "timeline",
                                                     "capacity-0", "capacity-1", "capacity-2"})


def test_sweep_report_draws_the_winner_map(reports):
    check_every_panel_drew(reports / "sweep.html", {"winner", "pareto-256", "pareto-512", "breakdown", "top",
                                                    "memory", "timeline"})
    assert (reports / "sweep-256px.json").is_file() and (reports / "sweep-512px.json").is_file()


def test_plan_report_draws_every_panel(reports):
    check_every_panel_drew(reports / "plan.html", {"plan", "memory", "timeline"})


def test_the_star_is_the_plan_written(reports):
    search = json.loads((reports / "search.json").read_text())
    plan = json.loads((reports / "plan.json").read_text())
    chosen = next(c for c in search["candidates"] if c["rank"] == search["chosen_rank"])
    assert chosen["plan"]["degrees"] == plan["degrees"] and chosen["plan"]["patches"] == plan["patches"]
    page = (reports / "search.html").read_text(encoding="utf-8")
    assert f"chosen (written): {chosen['label']}" in page
    assert page.count("chosen (the plan written)") == 1
