"""Write a benchmark's results into its own marked section of a Markdown page in docs/.

Each benchmark owns the text between its ``<!-- name:begin -->`` and ``<!-- name:end -->``
markers, so several benchmarks can share one page and a rerun replaces only its section.
"""

from __future__ import annotations

from pathlib import Path

from profiles.loading import write_atomic


def replace_section(path: Path, begin: str, end: str, section: str, *, title: str = "# Benchmarks") -> None:
    """Put ``section`` (which starts with ``begin`` and ends with ``end``) into ``path``."""
    text = path.read_text() if path.exists() else f"{title}\n\n"
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    write_atomic(path, text)


def publish(section: str, *, page: Path, begin: str, end: str, stdout_only: bool) -> int:
    """Print ``section`` and, unless ``stdout_only``, put it into ``page``; the script's exit code."""
    if not stdout_only:
        replace_section(page, begin, end, section)
    print(section)
    return 0
