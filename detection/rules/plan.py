"""compile_rule: metric text plus engine configuration -> an immutable RulePlan."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from .alignment import normalize_precision
from .analyze import Metric, analyze, column_lookup
from .errors import RuleSyntaxError
from .nodes import Call, Node, render
from .parser import parse_metrics


@dataclass(frozen=True)
class RulePlan:
    """A compiled rule. Build it with compile_rule(); the engine never mutates it."""

    metrics: tuple[Metric, ...]
    time_column: str
    key_column: str | None
    window_size: int | None
    step: int | None
    round_time: bool
    precision: str
    aggregates: tuple[Call, ...]  # every aggregate call, uid "agg<i>"
    agg_inputs: tuple[tuple[str, Node], ...]  # distinct aggregate arguments (text, tree), buffered per row
    prevs: tuple[Call, ...]  # every prev() call in evaluation order, uid "prev<i>"

    @property
    def has_window(self) -> bool:
        return bool(self.aggregates)

    @property
    def columns(self) -> tuple[str, ...]:
        """Value columns the rule reads."""
        return tuple(sorted({c for m in self.metrics for c in m.columns}))

    @property
    def fingerprint(self) -> str:
        """Identifies the plan in snapshots, so state is never restored into another rule."""
        spec = {"metrics": [m.text for m in self.metrics], "time": self.time_column, "key": self.key_column,
                "window": self.window_size, "step": self.step, "round": self.round_time,
                "precision": self.precision}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def compile_rule(metrics: str | list[str], columns: Iterable[str], *, time_column: str = "time",
                 key_column: str | None = None, window_size: int | None = None, step: int | None = None,
                 round_time: bool = True, precision: str = "ms") -> RulePlan:
    """Parse and check `metrics` against the value `columns`; raises RuleSyntaxError.

    `window_size` and `step` are in units of `precision` and are required when a metric uses
    an aggregate; as in DolphinDB, window_size must be a multiple of step.
    """
    precision = normalize_precision(precision)
    has_window = window_size is not None or step is not None
    if has_window:
        _check_window(window_size, step)
    value_columns = [c for c in columns if c not in (time_column, key_column)]
    lookup = column_lookup(value_columns)
    compiled = [analyze(p.index, p.tree, p.source, lookup, has_window) for p in parse_metrics(metrics)]
    aggregates, prevs, agg_inputs = [], [], {}
    for metric in compiled:
        for call in metric.aggregates:
            call.uid = f"agg{len(aggregates)}"
            aggregates.append(call)
            for arg in aggregate_inputs(call):
                agg_inputs.setdefault(render(arg), arg)
        for call in metric.prevs:
            call.uid = f"prev{len(prevs)}"
            prevs.append(call)
    return RulePlan(tuple(compiled), time_column, key_column, int(window_size) if has_window else None,
                    int(step) if has_window else None, bool(round_time), precision, tuple(aggregates),
                    tuple(agg_inputs.items()), tuple(prevs))


def aggregate_inputs(call: Call) -> list:
    """The arguments of an aggregate that vary per row (percentile's p and method do not)."""
    return call.args[:1] if call.name == "percentile" else call.args


def _check_window(window_size, step) -> None:
    for name, value in (("windowSize", window_size), ("step", step)):
        if not isinstance(value, int | float) or isinstance(value, bool) or value != int(value) or value <= 0:
            raise RuleSyntaxError(f"{name} must be a positive integer, got {value!r}")
    if window_size % step:
        raise RuleSyntaxError(f"windowSize ({window_size}) must be a multiple of step ({step})")
