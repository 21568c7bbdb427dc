"""The report's plotly figures, one function per panel; each takes plain records and returns a Figure.

Colours: in the Pareto front the fastest strategy families (the degrees' axes,
``cfg×pipefusion``) get one colour each, in order of their best latency, and the slower ones
share one grey trace; the winner map colours only the families that win a cell. GPU axes get whole-number ticks;
memory is drawn in the unit that makes the largest bar at least 1 (GB, MB or kB).
"""

from __future__ import annotations

from typing import Any, Iterable

import plotly.graph_objects as go

from planner.search_format import CandidateRecord, SearchReport, how_priced, latency_text, why_text

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f", "#393b79", "#637939", "#843c39", "#7b4173"]
CHOSEN = dict(symbol="star", size=20, color="gold", line=dict(color="black", width=1.5))
BREAKDOWN_GROUPS = {
    "compute": ("compute", "embed", "final"),
    "exposed communication": ("exposed_communication",),
    "bubble": ("bubble",),
    "warm-up": ("warmup",),
    "VAE/text": ("vae", "text", "text_encoder"),
    "scheduler + overhead": ("scheduler", "overhead"),
}
CATEGORY_COLOURS = {"compute": "#1f77b4", "embed": "#aec7e8", "final": "#9edae5", "exposed_communication": "#d62728",
                    "send": "#ff9896", "bubble": "#c7c7c7", "warm-up": "#ff7f0e", "warmup": "#ff7f0e",
                    "vae": "#2ca02c", "VAE/text": "#2ca02c", "scheduler": "#9467bd", "overhead": "#c5b0d5",
                    "scheduler + overhead": "#9467bd", "exposed communication": "#d62728"}


def strategy_of(label: str) -> str:
    """``cfg2×pipefusion4`` → ``cfg×pipefusion``."""
    return "×".join(part.rstrip("0123456789") for part in label.split("×"))


def family_colours(labels: Iterable[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted({strategy_of(x) for x in labels}))}


def integer_axis(values: Iterable[int]) -> dict[str, Any]:
    ticks = sorted(set(values))
    return dict(tickmode="array", tickvals=ticks, ticktext=[str(t) for t in ticks])


def pareto_figure(report: SearchReport, title: str | None = None, families_shown: int = 8) -> go.Figure:
    """Per family: its fastest plan at each GPU count as one line; the ``families_shown`` fastest families
    get a colour each, the rest share one grey trace (so the legend never scrolls)."""
    fig = go.Figure()
    families: dict[str, dict[int, CandidateRecord]] = {}
    for rec in report.candidates:
        best = families.setdefault(strategy_of(rec.label), {})
        if rec.devices not in best or rec.latency_s < best[rec.devices].latency_s:
            best[rec.devices] = rec
    order = sorted(families, key=lambda f: min(r.latency_s for r in families[f].values()))
    shown, rest = order[:families_shown], order[families_shown:]
    for i, name in enumerate(shown):
        per_count = families[name]
        recs = [per_count[n] for n in sorted(per_count)]
        colour = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(
            x=[r.devices for r in recs], y=[r.latency_s for r in recs], mode="lines+markers", name=name,
            line=dict(color=colour, width=2), marker=dict(size=9, color=colour,
                                                          symbol=["circle" if r.simulated else "circle-open"
                                                                  for r in recs]),
            text=[f"#{r.rank} {r.label} M={r.plan.patches} W={r.plan.warmup_steps} "
                  f"({how_priced(r)})" for r in recs],
            hovertemplate="%{text}<br>%{x} GPUs, %{y:.3g} s<extra></extra>"))
    if rest:
        recs = [r for f in rest for r in families[f].values()]
        fig.add_trace(go.Scatter(
            x=[r.devices for r in recs], y=[r.latency_s for r in recs], mode="markers",
            name=f"{len(rest)} slower families", marker=dict(size=6, color="#bbbbbb", symbol="circle-open"),
            text=[f"#{r.rank} {r.label} M={r.plan.patches}" for r in recs],
            hovertemplate="%{text}<br>%{x} GPUs, %{y:.3g} s<extra></extra>"))
    front, best_s = [], float("inf")
    for rec in sorted(report.candidates, key=lambda r: (r.devices, r.latency_s)):
        if rec.latency_s < best_s:
            front.append(rec)
            best_s = rec.latency_s
    fig.add_trace(go.Scatter(x=[r.devices for r in front], y=[r.latency_s for r in front], mode="lines",
                             name="Pareto front (all)", line=dict(color="black", dash="dot", width=1),
                             hoverinfo="skip"))
    chosen = report.chosen
    fig.add_trace(go.Scatter(x=[chosen.devices], y=[chosen.latency_s], mode="markers", marker=CHOSEN,
                             name=f"chosen (written): {chosen.label}",
                             hovertemplate=f"#{chosen.rank} {chosen.label}: %{{y:.3g}} s<extra>chosen</extra>"))
    fig.update_layout(title=title or f"Latency vs GPUs, one line per strategy family: {report.model} "
                                     f"{report.height_px}px on {report.topology}",
                      xaxis=dict(title="GPUs", **integer_axis(r.devices for r in report.candidates)),
                      yaxis=dict(title="latency (s)", type="log"), legend=dict(orientation="v"), height=480)
    return fig


def breakdown_figure(report: SearchReport, limit: int = 8) -> go.Figure:
    """Stacked seconds per plan (simulated top plans) in the issue's groups; keys not listed join the closest."""
    recs = [r for r in report.candidates if r.breakdown_s][:limit]
    chosen = report.chosen
    if chosen.breakdown_s and chosen not in recs:
        recs.append(chosen)
    names = [f"#{r.rank} {r.label}" + (" (chosen)" if r.rank == chosen.rank else "") for r in recs]
    fig = go.Figure()
    known = {k for keys in BREAKDOWN_GROUPS.values() for k in keys}
    for group, keys in BREAKDOWN_GROUPS.items():
        values = [sum(r.breakdown_s.get(k, 0.0) for k in keys) for r in recs]
        if group == "scheduler + overhead":  # any key this report does not know yet is time too
            values = [v + sum(t for k, t in r.breakdown_s.items() if k not in known) for v, r in zip(values, recs)]
        if any(v > 0 for v in values):
            fig.add_trace(go.Bar(x=names, y=values, name=group, marker_color=CATEGORY_COLOURS[group],
                                 hovertemplate="%{x}<br>" + group + ": %{y:.3g} s<extra></extra>"))
    fig.update_layout(barmode="stack", title="Where the time goes (simulated), top plans", yaxis_title="seconds",
                      height=460)
    return fig


def top_table(report: SearchReport, limit: int = 15) -> go.Figure:
    rows = report.candidates[:limit]
    scale, unit = memory_unit(max((r.peak_memory_bytes for r in rows), default=0))
    columns = {
        "#": [r.rank for r in rows], "plan": [r.label for r in rows], "GPUs": [r.devices for r in rows],
        "M": [r.plan.patches for r in rows], "W": [r.plan.warmup_steps for r in rows],
        "latency s": [latency_text(r) for r in rows],
        "speed-up": [f"{r.speedup_over_one_gpu:.2f}" if r.speedup_over_one_gpu else "-" for r in rows],
        f"peak {unit}": [f"{r.peak_memory_bytes / scale:.3g}" for r in rows],
        "runnable": ["yes" if r.runnable_reason is None else "no" for r in rows],
        "why it lost": [why_text(r, report) for r in rows],
    }
    chosen = report.chosen.rank
    fill = [["#fff4c2" if r.rank == chosen else "white" for r in rows]] * len(columns)
    fig = go.Figure(go.Table(columnwidth=[3, 14, 4, 3, 3, 6, 6, 6, 6, 40],
                             header=dict(values=list(columns), fill_color="#e8e8e8", align="left"),
                             cells=dict(values=list(columns.values()), fill_color=fill, align="left", height=26)))
    fig.update_layout(title="Top plans (highlighted: the plan written)", height=120 + 30 * len(rows),
                      margin=dict(l=20, r=20, t=50, b=10))
    return fig


def memory_unit(peak: float) -> tuple[float, str]:
    for scale, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if peak >= scale:
            return scale, name
    return 1.0, "bytes"


def memory_figure(label: str, per_device: dict[str, dict[str, int]], capacity: dict[str, int]) -> go.Figure:
    """Bytes per device by component (``MemoryBreakdown.as_dict()`` keys, whatever they are) and capacity."""
    devices = list(per_device)
    parts = [k for k in dict.fromkeys(k for d in per_device.values() for k in d) if k != "total"]
    peak = max((sum(v for k, v in d.items() if k != "total") for d in per_device.values()), default=0)
    scale, unit = memory_unit(peak)
    fig = go.Figure()
    for i, part in enumerate(parts):
        values = [per_device[d].get(part, 0) / scale for d in devices]
        if any(values):
            fig.add_trace(go.Bar(x=devices, y=values, name=part.replace("_", " "),
                                 marker_color=PALETTE[i % len(PALETTE)],
                                 hovertemplate="%{x}<br>" + part + f": %{{y:.3g}} {unit}<extra></extra>"))
    cap = [capacity.get(d, 0) / scale for d in devices]
    title = f"Memory per device by component: {label} (the plan written)"
    if cap and max(cap) <= 5 * max(peak / scale, 1e-12):
        fig.add_trace(go.Scatter(x=devices, y=cap, mode="markers+lines", name="capacity",
                                 line=dict(color="black", dash="dash"), marker=dict(symbol="line-ew-open", size=30)))
    elif cap:
        used = peak / max(capacity.values())
        cap_scale, cap_unit = memory_unit(max(capacity.values()))
        title += f"<br><sub>capacity {max(capacity.values()) / cap_scale:.3g} {cap_unit} per device is off the " \
                 f"scale: the fullest device uses {used:.2%} of it</sub>"
    fig.update_layout(barmode="stack", title=title, yaxis_title=unit, height=460)
    return fig


def timeline_figure(label: str, events: list[Any], rank_of_actor: dict[str, list[int]]) -> go.Figure:
    """Horizontal bars per rank from the simulated trace (``SimEvent``), one trace per category."""
    fig = go.Figure()
    by_cat: dict[str, list[tuple[str, float, float, str]]] = {}
    for e in events:
        for rank in rank_of_actor.get(e.actor, list(e.ranks)):
            by_cat.setdefault(e.cat, []).append((f"rank {rank}", e.start_s, e.end_s - e.start_s,
                                                 f"{e.name} step {e.step} patch {e.patch}"))
    for cat in sorted(by_cat):
        rows = by_cat[cat]
        fig.add_trace(go.Bar(y=[r[0] for r in rows], x=[r[2] for r in rows], base=[r[1] for r in rows],
                             orientation="h", name=cat, marker_color=CATEGORY_COLOURS.get(cat, "#7f7f7f"),
                             text=[r[3] for r in rows], textposition="none",
                             hovertemplate="%{y} %{text}<br>%{base:.4g} s + %{x:.3g} s<extra>" + cat + "</extra>"))
    ranks = sorted({r for rows in by_cat.values() for r, *_ in rows}, key=lambda s: int(s.split()[1]))
    fig.update_layout(barmode="overlay", title=f"Simulated timeline per rank: {label} (the plan written)",
                      xaxis_title="seconds", yaxis=dict(categoryorder="array", categoryarray=ranks[::-1]),
                      height=max(400, 120 + 40 * len(ranks)))
    return fig


def winner_figure(reports: list[SearchReport]) -> go.Figure:
    """The fastest plan's strategy family at each resolution × GPU count (a sweep)."""
    counts = sorted({r.devices for rep in reports for r in rep.candidates})
    winners: list[list[CandidateRecord | None]] = []
    for rep in reports:
        row = []
        for n in counts:
            recs = [r for r in rep.candidates if r.devices == n]
            row.append(min(recs, key=lambda r: r.latency_s) if recs else None)
        winners.append(row)
    families = sorted({strategy_of(w.label) for row in winners for w in row if w is not None})
    colours = family_colours(families)
    index = {f: i for i, f in enumerate(families)}
    z = [[index[strategy_of(w.label)] if w else None for w in row] for row in winners]
    text = [[f"{w.label}<br>{w.latency_s:.3g} s" if w else "" for w in row] for row in winners]
    n = max(len(families), 1)
    scale = []
    for f in families:
        lo, hi = index[f] / n, (index[f] + 1) / n
        scale += [[lo, colours[f]], [hi, colours[f]]]
    fig = go.Figure(go.Heatmap(z=z, x=[str(c) for c in counts], y=[f"{rep.height_px}px" for rep in reports],
                               text=text, texttemplate="%{text}", zmin=-0.5, zmax=n - 0.5,
                               colorscale=scale or "Viridis", xgap=2, ygap=2,
                               colorbar=dict(tickvals=list(range(n)), ticktext=families, title="family"),
                               hovertemplate="%{y}, %{x} GPUs: %{text}<extra></extra>"))
    fig.update_layout(title="Winner map: fastest plan per resolution × GPU count", xaxis_title="GPUs",
                      yaxis_title="resolution", height=140 + 90 * len(reports))
    return fig


def capacity_figures(capacity: Any) -> list[go.Figure]:
    """p99 and utilisation against offered rate for each sized fleet; the fleets' GPUs and cost."""
    curves = go.Figure()
    util = go.Figure()
    for i, curve in enumerate(capacity.curves):
        colour = PALETTE[i % len(PALETTE)]
        rates = [p.rate for p in curve.points]
        curves.add_trace(go.Scatter(x=rates, y=[p.p99_s for p in curve.points], mode="lines+markers",
                                    name=f"{curve.label} ({curve.gpus} GPUs) p99", line=dict(color=colour)))
        curves.add_trace(go.Scatter(x=rates, y=[p.p50_s for p in curve.points], mode="lines+markers",
                                    name=f"{curve.label} p50", line=dict(color=colour, dash="dot")))
        util.add_trace(go.Scatter(x=rates, y=[p.utilisation for p in curve.points], mode="lines+markers",
                                  name=f"{curve.label} ({curve.gpus} GPUs)", line=dict(color=colour)))
    if capacity.slo_s:
        curves.add_hline(y=capacity.slo_s, line_dash="dash", line_color="black",
                         annotation_text=f"SLO {capacity.slo_s:g} s")
    what = f"{capacity.model} {capacity.resolution}px, {capacity.arrivals} arrivals, {capacity.routing} routing"
    curves.update_layout(title=f"Capacity: latency against offered rate ({what})", xaxis_title="requests/s",
                         yaxis_title="seconds", height=440)
    util.update_layout(title="Capacity: utilisation against offered rate", xaxis_title="requests/s",
                       yaxis=dict(title="mean replica utilisation", tickformat=".0%", range=[0, 1.05]), height=400)
    fleets = list({f.label: f for f in reversed(capacity.options)}.values())[::-1]
    cost = go.Figure(go.Bar(x=[f.label for f in fleets], y=[f.gpus for f in fleets],
                            marker_color=["#2ca02c" if f.meets_slo else "#c7c7c7" for f in fleets],
                            text=[f"p99 {f.p99_s:.3g} s" + (f", ${f.usd_per_hour:.2f}/h, ${f.usd_per_1000_images:.3g}"
                                                            f"/1k img" if f.usd_per_hour is not None else "")
                                  for f in fleets], textposition="auto"))
    cost.update_layout(title=f"Fleets sized for {capacity.rate:.3g} req/s (green: meets the SLO)", yaxis_title="GPUs",
                       yaxis=integer_axis(range(0, max([f.gpus for f in fleets], default=1) + 1)), height=420)
    return [curves, util, cost]
