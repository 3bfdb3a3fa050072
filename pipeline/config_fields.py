"""How config values are checked: the field helpers the sections of ``pipeline.config`` are
declared with, and the conversion of TOML / ``--set`` values to a field's type.

A number field declared with ``num(default, low, high)`` carries its allowed range; a choice
field is typed ``Literal[...]``. ``Section.__post_init__`` checks every field when a section is
built, so a bad value fails with one line naming the key before anything loads.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal


@dataclass(frozen=True)
class Range:
    """Allowed interval of a number key; ``None`` = unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: ``low`` itself is not allowed

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        if self.low is None and self.high is None:
            return ""
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        low = "-inf" if self.low is None else f"{self.low:g}"
        return f"in {'(' if self.low_open else '['}{low}, {self.high:g}]"


def num(
    default: float, low: float | None = None, high: float | None = None, *, open_low: bool = False
) -> Any:
    """A number field whose value must lie in ``[low, high]`` (``(low, high]`` with
    ``open_low``); the range is checked when the section is built."""
    return field(default=default, metadata={"range": Range(low, high, open_low)})


SHARE = (0.0, 1.0)  # a share, a probability or a [0, 1] map value


class Section:
    """Base of the config sections: validates every field when a section is built (by
    ``Config(...)``, ``dataclasses.replace`` and so ``load_config``), in one line naming the key
    (``config output.format must be one of png, webp, mask; got 'gif'``)."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            name = f"{self.section}.{spec.name}"
            value = _validate(name, getattr(self, spec.name), hints[spec.name], spec.metadata)
            object.__setattr__(self, spec.name, value)


def _validate(name: str, value: Any, kind: Any, metadata: Mapping[str, Any]) -> Any:
    """``value`` checked against the field's type (a ``Literal`` lists the choices) and range."""
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise ValueError(f"config {name} must be one of {', '.join(choices)}; got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"config {name} must be a string; got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"config {name} must be true or false; got {value!r}")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config {name} must be a number; got {value!r}")
        allowed = metadata.get("range", Range())
        whole = math.isfinite(value) and (kind is float or value == int(value))
        if not whole or value not in allowed:
            what = ("an integer " if kind is int else "a number ") + (str(allowed) or "(finite)")
            raise ValueError(f"config {name} must be {what}; got {value!r}")
        return kind(value)
    raise ValueError(f"config {name}: unsupported type {kind}")


def coerce(name: str, value: Any, kind: Any) -> Any:
    """A TOML or ``--set`` value turned into the field's type (ranges are the section's job)."""
    if typing.get_origin(kind) is Literal:
        kind = str
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ValueError(f"config {name} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"config {name} must be an integer, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"config {name} must be an integer, got {value!r}") from None
        if not math.isfinite(number) or number != int(number):
            raise ValueError(f"config {name} must be an integer, got {value!r}")
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"config {name} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"config {name} must be a number, got {value!r}") from None
    if kind is str:
        return str(value)
    raise ValueError(f"config {name}: unsupported type {kind}")
