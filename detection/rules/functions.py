"""The functions a metric may call, and numpy implementations of the row-level ones.

NULL is NaN. Comparisons involving NULL are false (including `!=`), so a missing value never
raises an anomaly by itself; `isNull(x)` tests for it explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INTERPOLATIONS = ("linear", "lower", "higher", "nearest", "midpoint")


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    kind: str  # "row" (elementwise), "compare", "prev" (per-key lag) or "agg" (window aggregate)
    min_args: int
    max_args: int
    returns: str  # "num" or "bool"


_SPECS = [
    FunctionSpec("abs", "row", 1, 1, "num"),
    FunctionSpec("log", "row", 1, 1, "num"),
    FunctionSpec("isNull", "row", 1, 1, "bool"),
    FunctionSpec("prev", "prev", 1, 1, "num"),
    *(FunctionSpec(n, "compare", 2, 2, "bool") for n in ("lt", "le", "gt", "ge", "eq", "ne")),
    *(FunctionSpec(n, "agg", 1, 1, "num")
      for n in ("avg", "sum", "min", "max", "count", "std", "var", "med", "first", "last")),
    FunctionSpec("percentile", "agg", 2, 3, "num"),
    FunctionSpec("wavg", "agg", 2, 2, "num"),
]
FUNCTIONS = {s.name: s for s in _SPECS}
# DolphinDB names are case-sensitive; this only powers "did you mean" hints.
_BY_LOWER = {s.name.lower(): s.name for s in _SPECS}
COMPARE_FUNCTIONS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def suggest_function(name: str) -> str | None:
    return _BY_LOWER.get(name.lower())


def as_float(v):
    """Booleans take part in arithmetic as 0/1."""
    if isinstance(v, np.ndarray) and v.dtype == np.bool_ or isinstance(v, bool | np.bool_):
        return np.asarray(v, dtype=np.float64)
    return v


def truth(v):
    """Truth of a value in and/or/not: non-zero and not NULL."""
    if isinstance(v, np.ndarray) and v.dtype == np.bool_ or isinstance(v, bool | np.bool_):
        return v
    return (v != 0) & ~np.isnan(v)


def arithmetic(op: str, a, b):
    a, b = as_float(a), as_float(b)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    # DolphinDB yields NULL for division by zero rather than inf.
    return np.where(b == 0, np.nan, a / np.where(b == 0, 1.0, b))


_COMPARE = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
            "==": np.equal, "!=": np.not_equal}


def compare(op: str, a, b):
    result = _COMPARE[op](a, b)
    if op == "!=":
        # NaN != x is True in IEEE arithmetic; NULL comparisons are false here.
        a, b = as_float(a), as_float(b)
        result = result & ~np.isnan(a) & ~np.isnan(b)
    return result


def logical(op: str, a, b):
    return (truth(a) & truth(b)) if op == "and" else (truth(a) | truth(b))


def row_function(name: str, args: list):
    x = as_float(args[0])
    if name == "abs":
        return np.abs(x)
    if name == "log":
        return np.log(x)
    if name == "isNull":
        return np.isnan(x)
    return compare(COMPARE_FUNCTIONS[name], args[0], args[1])
