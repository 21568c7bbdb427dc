"""``python -m benchmarks`` finds every benchmark script and refuses unknown names in one line."""

from __future__ import annotations

import pytest

from benchmarks.__main__ import scripts, select


def test_every_script_is_found_and_the_package_files_are_not() -> None:
    names = [p.name for p in scripts()]
    assert {"search_speed.py", "simulate_speed.py", "validate_published.py", "estimate_accuracy.py"} <= set(names)
    assert "__main__.py" not in names and "__init__.py" not in names
    assert names == sorted(names)


def test_names_select_scripts_with_or_without_suffix() -> None:
    assert [p.stem for p in select(["validate_published.py", "search_speed"])] == ["validate_published",
                                                                                   "search_speed"]
    assert select([]) == scripts()


def test_unknown_name_is_one_line() -> None:
    with pytest.raises(SystemExit, match="unknown benchmark nope; benchmarks: [a-z_]+, estimate_accuracy"):
        select(["nope"])
