"""Small builders shared by the rule-engine tests."""

from __future__ import annotations

import numpy as np

from detection.rules import RuleEngine, compile_rule

EXAMPLE_1_START = 1538960461002  # 2018.10.08T01:01:01.002 in ms
EXAMPLE_1_TEMPS = [59, 66, 57, 60, 63, 51, 53, 52, 56, 55]


def example_1_batch(times_offset: int = EXAMPLE_1_START) -> dict:
    return {"time": times_offset + np.arange(10, dtype=np.int64), "temp": np.array(EXAMPLE_1_TEMPS, float)}


def run(metrics, batch, columns=None, **config):
    """Compile and run one batch; returns the outputs."""
    columns = columns or [c for c in batch if c not in ("time", config.get("key_column"))]
    return RuleEngine(compile_rule(metrics, columns, **config)).process(batch)


def window_value(expr: str, xs, **config) -> float:
    """Value of aggregate expression `expr` over one window holding xs (column x, with w = 1..n)."""
    n = len(xs)
    batch = {"time": np.append(np.arange(n, dtype=np.int64), 1000),
             "x": np.append(np.asarray(xs, float), 0.0), "w": np.append(np.arange(1.0, n + 1), 0.0)}
    metric = f"isNull({expr}) or not isNull({expr})"  # always true, so every window reports
    outputs = run(metric, batch, ["x", "w"], window_size=1000, step=1000, **config)
    assert len(outputs) == 1, outputs
    return outputs[0].observed[expr]


def row_values(expr: str, **columns) -> list:
    """Per-row truth of a row-level condition over the given columns."""
    n = len(next(iter(columns.values())))
    batch = {"time": np.arange(n, dtype=np.int64), **{k: np.asarray(v, float) for k, v in columns.items()}}
    hits = {o.msg_id for o in run(expr, batch, list(columns))}
    return [i in hits for i in range(n)]
