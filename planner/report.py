"""``pfplan report``: one self-contained plotly HTML page about a search or a plan.

From a search (``pfplan search --results search.json``): latency against GPUs for every
candidate, one colour per strategy (the degrees' axes, e.g. ``cfg×pipefusion``), simulated
plans filled and estimate-only ones hollow; a table of the top plans with why each lost;
the memory per device of the chosen plan. From a single plan.json: its memory per device
and a one-row table. plotly.js is embedded so the page works offline.
"""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go

from planner.search_format import CandidateRecord, SearchReport
from profiles.errors import InputError
from profiles.loading import load_model_file, read_document, write_atomic
from simulator.plan import ParallelPlan

GB = 1e9


def strategy_of(label: str) -> str:
    """``cfg2×pipefusion4`` → ``cfg×pipefusion``."""
    return "×".join(part.rstrip("0123456789") for part in label.split("×"))


def latency_figure(report: SearchReport) -> go.Figure:
    fig = go.Figure()
    groups: dict[str, list[CandidateRecord]] = {}
    for rec in report.candidates:
        groups.setdefault(strategy_of(rec.label), []).append(rec)
    for name, recs in sorted(groups.items()):
        recs = sorted(recs, key=lambda r: (r.devices, r.latency_s))
        fig.add_trace(go.Scatter(
            x=[r.devices for r in recs], y=[r.latency_s for r in recs], mode="markers", name=name,
            marker=dict(size=9, symbol=["circle" if r.simulated else "circle-open" for r in recs]),
            text=[f"#{r.rank} {r.label} M={r.plan.patches} ({'simulated' if r.simulated else 'estimate'})"
                  for r in recs], hoverinfo="text+y"))
    fig.update_layout(title=f"Latency vs GPUs: {report.model} {report.height_px}px on {report.topology}",
                      xaxis_title="GPUs", yaxis_title="latency (s)", yaxis_type="log")
    return fig


def top_table(records: list[CandidateRecord], limit: int = 15) -> go.Figure:
    rows = records[:limit]
    columns = {
        "#": [r.rank for r in rows], "plan": [r.label for r in rows], "GPUs": [r.devices for r in rows],
        "M": [r.plan.patches for r in rows], "latency s": [f"{r.latency_s:.3g}" for r in rows],
        "speed-up": [f"{r.speedup_over_one_gpu:.2f}" if r.speedup_over_one_gpu else "-" for r in rows],
        "peak GB": [f"{r.peak_memory_bytes / GB:.1f}" for r in rows],
        "runnable": ["yes" if r.runnable_reason is None else "no" for r in rows],
        "why it lost": [r.lost_because or "chosen" for r in rows],
    }
    fig = go.Figure(go.Table(header=dict(values=list(columns)), cells=dict(values=list(columns.values()))))
    fig.update_layout(title="Top plans", height=120 + 30 * len(rows))
    return fig


def memory_figure(plan: ParallelPlan) -> go.Figure:
    pred = plan.prediction
    fig = go.Figure()
    if pred is not None and pred.peak_memory_bytes:
        devices = list(pred.peak_memory_bytes)
        fig.add_trace(go.Bar(x=devices, y=[pred.peak_memory_bytes[d] / GB for d in devices], name="peak"))
        if pred.memory_capacity_bytes:
            fig.add_trace(go.Scatter(x=devices, y=[pred.memory_capacity_bytes.get(d, 0) / GB for d in devices],
                                     mode="markers", marker=dict(symbol="line-ew-open", size=30), name="capacity"))
    fig.update_layout(title=f"Memory per device: {plan.degrees.label()}", yaxis_title="GB")
    return fig


def read_source(source: Path) -> SearchReport | ParallelPlan:
    data = read_document(source)
    if isinstance(data, dict) and "candidates" in data:
        return load_model_file(SearchReport, source)
    if isinstance(data, dict) and "degrees" in data:
        return load_model_file(ParallelPlan, source)
    raise InputError("expected a plan.json or a search.json (pfplan search --results)", file=str(source))


def write_report(source: Path, output: Path) -> list[str]:
    """Write the HTML page for ``source``; returns the plan labels it shows."""
    doc = read_source(source)
    if isinstance(doc, SearchReport):
        title = f"pfplan search: {doc.model} {doc.height_px}px, {doc.steps} steps on {doc.topology}"
        figures = [latency_figure(doc), top_table(doc.candidates), memory_figure(doc.candidates[0].plan)]
        names = [r.label for r in doc.candidates[:15]]
    else:
        title = f"pfplan plan: {doc.model} {doc.height_px}px on {doc.topology or '-'}"
        latency = f"{doc.prediction.latency_s:.3g} s" if doc.prediction else "not predicted"
        summary = go.Figure(go.Table(header=dict(values=["plan", "GPUs", "M", "W", "stage split", "latency"]),
                                     cells=dict(values=[[doc.degrees.label()], [doc.world_size], [doc.patches],
                                                        [doc.warmup_steps], [str(doc.stage_split)], [latency]])))
        figures = [summary, memory_figure(doc)]
        names = [doc.degrees.label()]
    parts = [fig.to_html(include_plotlyjs=(i == 0), full_html=False) for i, fig in enumerate(figures)]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>\n")
    write_atomic(output, page)
    return names
