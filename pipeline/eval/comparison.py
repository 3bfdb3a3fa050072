"""The result of comparing two evaluation runs (``pipeline.eval.compare`` computes it,
``pipeline.eval.compare_html`` draws it): thresholds, per-metric and per-item deltas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Threshold:
    """How much worse counts as a regression: ``value`` absolute, or relative to A's value."""

    value: float
    relative: bool = False

    def describe(self) -> str:
        return f"{self.value * 100:g}%" if self.relative else f"{self.value:g}"


@dataclass
class MetricDelta:
    group: str  # subclass name or "overall"
    metric: str
    a: float | None
    b: float | None
    threshold: Threshold | None
    worse: bool = False  # beyond the threshold
    better: bool = False

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass
class ItemDelta:
    name: str
    subclass: str
    worse: bool
    severity: float  # largest worsening / threshold over gated metrics (> 1 = beyond)
    reasons: list[str]
    a: Mapping[str, Any]
    b: Mapping[str, Any]


@dataclass
class Comparison:
    run_a: Path
    run_b: Path
    groups: list[MetricDelta] = field(default_factory=list)
    items: list[ItemDelta] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def worse_groups(self) -> list[MetricDelta]:
        return [g for g in self.groups if g.worse]

    @property
    def exit_status(self) -> int:
        return 1 if self.worse_groups else 0
