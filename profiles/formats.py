"""The base of every file format: unknown keys refused, numbers finite, booleans not numbers.

Each format (topology, model preset, profile, plan, search results, trace, measured runs,
GPU catalog) is a pydantic model; deriving it from :class:`FormatModel` instead of
``BaseModel`` is how it gets the three rules every numeric field of every file obeys,
in one place rather than one ``if`` per field:

* ``extra="forbid"``: a misspelt key is an error, not silently ignored;
* ``allow_inf_nan=False``: ``.inf``, ``.nan``, ``1.0e+400`` (YAML) and ``Infinity``/``NaN``
  (JSON) are refused for every float field: a bandwidth of ``inf`` would otherwise make
  the simulator print "inf s" and NaN cells;
* a boolean is not a number: YAML's ``steps: true`` would otherwise be read as 1.

Range constraints (``gt=0``, ``ge=1``) stay on the fields themselves.
"""

from __future__ import annotations

import types
import typing
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

_NUMBERS = (int, float)


def _is_numeric(annotation: Any) -> bool:
    """``int``, ``float``, ``int | None``, ``Optional[float]`` (but not ``bool``, lists, models)."""
    if annotation in _NUMBERS:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(args) and all(a in _NUMBERS for a in args)
    return False


class FormatModel(BaseModel):
    """A pydantic model read from a user's file (see the module docstring for its rules)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    _numeric_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        names = set()
        for name, info in cls.model_fields.items():
            if _is_numeric(info.annotation):
                names.add(name)
        cls._numeric_fields = frozenset(names)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name in cls._numeric_fields:
            raise ValueError("a boolean is not a number")
        return value
