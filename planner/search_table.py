"""The ``pfplan search`` table: every column on a wide terminal, the essential ones at 80 columns.

Columns are listed best first with a drop priority (:mod:`planner.tables`): at 80 columns
the placement, traffic, throughput and runnable columns go first (the runnable column is shown
only when a listed plan is one pfrun refuses); the rank, plan, GPUs,
latency and the reason it lost stay. Numbers are never split across lines.
"""

from __future__ import annotations

from planner.search_format import SearchReport, latency_text, why_text
from planner.tables import Column, print_rows

GB = 1e9


def gb(value: int | float) -> str:
    return f"{value / GB:.1f}"


def traffic_text(by_class: dict[str, int]) -> str:
    parts = [f"{cls} {gb(v)}" for cls, v in sorted(by_class.items()) if v > 0]
    return ", ".join(parts) or "-"


COLUMNS = [Column("#"), Column("plan"), Column("GPUs"), Column("M", priority=2), Column("W", priority=3),
           Column("placement", priority=8), Column("latency s"), Column("speed-up", priority=4),
           Column("img/s", priority=6), Column("mem GB", priority=5), Column("traffic GB", priority=9),
           Column("runnable", priority=7), Column("why it lost", wrap=True)]


def table_rows(report: SearchReport, top: int) -> list[list[str]]:
    rows = []
    for rec in report.candidates[:top]:
        rows.append([str(rec.rank), rec.label, str(rec.devices), str(rec.plan.patches), str(rec.plan.warmup_steps),
                     rec.placement_name, latency_text(rec),
                     f"{rec.speedup_over_one_gpu:.2f}×" if rec.speedup_over_one_gpu else "-",
                     f"{rec.throughput_images_per_s:.3g}", f"{gb(rec.peak_memory_bytes)}/{gb(rec.capacity_bytes)}",
                     traffic_text(rec.traffic_bytes_by_route_class), "yes" if rec.runnable_reason is None else "no",
                     why_text(rec, report)])
    return rows


def print_search_table(report: SearchReport, top: int) -> None:
    """The table; the runnable column only when a plan shown is one pfrun refuses (since issue 11
    pfrun runs every shape the search enumerates for the shipped families, so it is rare)."""
    title = (f"{report.model} {report.height_px}px, {report.steps} steps on {report.topology} "
             f"({report.objective}, {report.cost_model})")
    rows = table_rows(report, top)
    columns = COLUMNS
    if all(rec.runnable_reason is None for rec in report.candidates[:top]):
        keep = [i for i, c in enumerate(COLUMNS) if c.header != "runnable"]
        columns, rows = [COLUMNS[i] for i in keep], [[row[i] for i in keep] for row in rows]
    print_rows(columns, rows, title=title)
