"""``pfplan report``: one self-contained plotly HTML page about a search, a sweep or a plan.

Panels (:mod:`planner.report_figures`): latency against GPUs with one line per strategy
family and the chosen plan starred; the top plans' simulated time breakdown as stacked
bars; the top-plans table; for the plan written (``chosen`` always means the plan that
``-o`` wrote, :attr:`SearchReport.chosen`), its memory per device by component against
capacity and its per-rank timeline, both from re-simulating it (so the topology and
profile it was searched with must still load); a winner map over resolution × GPU count
for a sweep (``pfplan search --resolutions``); capacity curves with ``--capacity``.

plotly.js is inlined so the page works offline. A small script at the end writes a render
summary (traces and drawn marks per panel) into ``#render-summary`` once plotly has drawn,
which the browser test reads.
"""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go

from planner.capacity_format import CapacityReport
from planner.report_figures import (breakdown_figure, capacity_figures, memory_figure, pareto_figure,
                                    strategy_of, timeline_figure, top_table, winner_figure)
from planner.search_format import SearchReport, SweepReport
from profiles.errors import InputError
from profiles.loading import load_model_file, read_document, write_atomic
from simulator.plan import ParallelPlan

__all__ = ["write_report", "strategy_of"]

SUMMARY_SCRIPT = """
<pre id="render-summary" style="display:none"></pre>
<script>
(function () {
  function summarise() {
    var out = {};
    document.querySelectorAll('.js-plotly-plot').forEach(function (gd) {
      var panel = gd.closest('[data-panel]');
      var marks = gd.querySelectorAll('path.point, g.trace.bars path, path.js-line, g.hm image, g.table .cell-text');
      out[panel ? panel.getAttribute('data-panel') : gd.id] = {
        traces: (gd.data || []).length, drawn_traces: gd.querySelectorAll('g.trace, g.hm, g.table').length,
        marks: marks.length};
    });
    document.getElementById('render-summary').textContent = JSON.stringify(out);
  }
  window.addEventListener('load', function () { setTimeout(summarise, 500); });
})();
</script>
"""


def read_source(source: Path) -> SearchReport | SweepReport | ParallelPlan:
    data = read_document(source)
    if isinstance(data, dict) and data.get("kind") == "sweep":
        return load_model_file(SweepReport, source)
    if isinstance(data, dict) and "candidates" in data:
        return load_model_file(SearchReport, source)
    if isinstance(data, dict) and "degrees" in data:
        return load_model_file(ParallelPlan, source)
    raise InputError("expected a plan.json, a search.json or a sweep (pfplan search --results)", file=str(source))


def plan_panels(plan: ParallelPlan, model: str, topology: str | None, profile: str | None) -> list[tuple[str, go.Figure]]:
    """Memory by component and the per-rank timeline of ``plan``, re-simulated; a note when it cannot be."""
    from planner.job import load_job
    from simulator.engine import simulate
    from simulator.memory import capacity_bytes

    label = plan.degrees.label()
    try:
        cluster, preset, cost_model = load_job(topology or plan.topology or "", model, profile)
        from profiles.costs.selection import dtype_bytes_of

        result = simulate(plan, preset, cluster, cost_model, record_trace=True, dtype_bytes=dtype_bytes_of(cost_model))
    except InputError as exc:
        note = go.Figure()
        note.update_layout(title=f"{label}: cannot re-simulate the plan written ({exc.one_line()})")
        return [("plan-note", note)]
    memory = {d: m.as_dict() for d, m in result.memory.items()}
    capacity = {d: capacity_bytes(cluster, d) for d in memory}
    actors = {}
    for e in result.events:
        actors.setdefault(e.actor, list(e.ranks))
    return [("memory", memory_figure(label, memory, capacity)),
            ("timeline", timeline_figure(label, result.events, actors))]


def search_panels(doc: SearchReport) -> list[tuple[str, go.Figure]]:
    chosen = doc.chosen
    panels = [("pareto", pareto_figure(doc)), ("breakdown", breakdown_figure(doc)), ("top", top_table(doc))]
    return panels + plan_panels(chosen.plan, doc.model, doc.topology_source or doc.topology, doc.profile)


def write_report(source: Path, output: Path, capacity: Path | None = None) -> list[str]:
    """Write the HTML page for ``source`` (and ``capacity``); returns the plan labels it shows."""
    doc = read_source(source)
    if isinstance(doc, SweepReport):
        first = doc.searches[0]
        title = (f"pfplan sweep: {first.model} at {', '.join(f'{s.height_px}px' for s in doc.searches)}, "
                 f"{first.steps} steps on {first.topology}")
        panels = [("winner", winner_figure(doc.searches))]
        for s in doc.searches:
            panels.append((f"pareto-{s.height_px}", pareto_figure(s)))
        last = doc.searches[-1]
        panels += [("breakdown", breakdown_figure(last)), ("top", top_table(last))]
        panels += plan_panels(last.chosen.plan, last.model, last.topology_source or last.topology, last.profile)
        names = [r.label for s in doc.searches for r in s.candidates[:15]]
    elif isinstance(doc, SearchReport):
        title = f"pfplan search: {doc.model} {doc.height_px}px, {doc.steps} steps on {doc.topology}"
        panels = search_panels(doc)
        names = [r.label for r in doc.candidates[:15]]
    else:
        title = f"pfplan plan: {doc.model} {doc.height_px}px on {doc.topology or '-'}"
        latency = f"{doc.prediction.latency_s:.3g} s" if doc.prediction else "not predicted"
        summary = go.Figure(go.Table(header=dict(values=["plan", "GPUs", "M", "W", "stage split", "latency"]),
                                     cells=dict(values=[[doc.degrees.label()], [doc.world_size], [doc.patches],
                                                        [doc.warmup_steps], [str(doc.stage_split)], [latency]])))
        summary.update_layout(height=220, title="The plan")
        prov = doc.provenance
        panels = [("plan", summary)] + plan_panels(doc, doc.model, prov.topology if prov else None,
                                                   prov.profile if prov else None)
        names = [doc.degrees.label()]
    if capacity is not None:
        cap = load_model_file(CapacityReport, capacity)
        panels += [(f"capacity-{i}", fig) for i, fig in enumerate(capacity_figures(cap))]
    parts = []
    for i, (name, fig) in enumerate(panels):
        fig.update_layout(template="plotly_white")
        body = fig.to_html(include_plotlyjs=(i == 0), full_html=False, config={"displaylogo": False})
        parts.append(f"<section data-panel='{html.escape(name)}'>{body}</section>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:1200px;margin:auto} section{margin:12px 0}</style>"
            f"</head><body><h1>{html.escape(title)}</h1>{''.join(parts)}{SUMMARY_SCRIPT}</body></html>\n")
    write_atomic(output, page)
    return names


def panel_names(page: str) -> list[str]:
    """The panels a written page holds (for tests and the CLI)."""
    import re

    return re.findall(r"data-panel='([^']+)'", page)


