"""Terminal tables that fit the terminal: numbers never split, columns dropped before anything wraps badly.

``rich`` folds a cell that is wider than its column, which breaks ``3.11`` into ``3.1`` and
``1`` on two lines. Here every cell but the free-text ones (``wrap=True``: words wrap at
spaces) is kept on one line at its full width; when the table would not fit, the
lowest-priority columns are left out (the caller lists them, best first) and a footnote
names them. The width is ``$COLUMNS`` when set (also when piped), else the terminal's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table

from profiles.cli_support import out_console

GAP = 2
"""Characters between two columns (collapsed padding around the blank rule)."""
MIN_WRAP = 14
"""Narrowest a wrapping column may get, so a word or number in it still fits whole."""


@dataclass(frozen=True)
class Column:
    header: str
    wrap: bool = False
    """Free text that may wrap at spaces (never a number column)."""
    priority: int = 0
    """Higher is dropped first when the table does not fit."""


def width() -> int:
    """``$COLUMNS`` when it is a positive number, else the output console's width."""
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) > 0 else out_console.width


def fit_columns(columns: list[Column], rows: list[list[str]], limit: int) -> list[int]:
    """Indices of the columns to show: drop the highest priority (then rightmost) until the table fits."""

    def need(index: int) -> int:
        col = columns[index]
        longest = max((len(r[index]) for r in rows), default=0)
        if col.wrap:
            words = max((len(w) for r in rows for w in r[index].split()), default=0)
            return max(MIN_WRAP, words, max((len(w) for w in col.header.split()), default=0))
        return max(longest, max(len(w) for w in col.header.split()))

    keep = list(range(len(columns)))
    while len(keep) > 1 and sum(need(i) for i in keep) + GAP * (len(keep) - 1) > limit:
        drop = max(keep, key=lambda i: (columns[i].priority, i))
        if columns[drop].priority <= 0 and all(columns[i].priority <= 0 for i in keep):
            break
        keep.remove(drop)
    return keep


def render(columns: list[Column], rows: list[list[str]], *, limit: int, title: str | None = None) -> Table:
    keep = fit_columns(columns, rows, limit)
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False,
                  title_justify="left", padding=(0, 1), collapse_padding=True)
    for i in keep:
        col = columns[i]
        table.add_column(col.header, no_wrap=not col.wrap, overflow="fold" if col.wrap else "ignore",
                         min_width=MIN_WRAP if col.wrap else None)
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    table.caption = None
    dropped = [columns[i].header for i in range(len(columns)) if i not in keep]
    if dropped:
        table.caption = f"(left out to fit {limit} columns: {', '.join(dropped)})"
        table.caption_justify = "left"
    return table


def print_rows(columns: list[Column], rows: list[list[str]], *, title: str | None = None) -> None:
    """Print ``rows`` under ``columns`` at the terminal's (or ``$COLUMNS``') width."""
    limit = width()
    console = Console(width=limit, highlight=False, file=out_console.file, soft_wrap=False)
    console.print(render(columns, rows, limit=limit, title=title))


def text_console() -> Console:
    """A console for prose lines at the same width as the tables (wraps at spaces)."""
    return Console(width=width(), highlight=False, file=out_console.file)
