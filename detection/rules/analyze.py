"""Checks one parsed metric against the schema and sorts it into DolphinDB's three classes.

- "row": no aggregate; evaluated on every row.
- "agg_const": aggregates, and columns only inside them; evaluated once per window.
- "agg_column": aggregates and columns outside them; each row is compared with the
  aggregates of the previous window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import RuleSyntaxError
from .functions import FUNCTIONS, INTERPOLATIONS, suggest_function
from .nodes import Binary, Bool, Call, Col, Node, Num, Str, Unary, render, walk


@dataclass
class Metric:
    """One compiled metric. `text` is the canonical anomalyString; `columns` are the columns
    it reads; `aggregates` / `prevs` are its aggregate and prev() calls (with uids)."""

    index: int
    text: str
    source: str
    tree: Node
    kind: str
    columns: tuple[str, ...]
    row_columns: tuple[str, ...]  # columns read outside aggregates
    aggregates: list[Call] = field(default_factory=list)
    prevs: list[Call] = field(default_factory=list)


class _Checker:
    def __init__(self, index: int, columns: dict[str, str], has_window: bool):
        self.index = index
        self.columns = columns  # exact name -> name, plus lower-case name -> name when unique
        self.has_window = has_window

    def fail(self, message: str, node: Node) -> RuleSyntaxError:
        return RuleSyntaxError(message, node.pos, self.index)

    def check(self, node: Node, in_agg: Call | None = None, in_prev: bool = False) -> str:
        """Resolve names in place and return the node's type: "num", "bool" or "str"."""
        if isinstance(node, Num):
            return "num"
        if isinstance(node, Bool):
            return "bool"
        if isinstance(node, Str):
            raise self.fail("a string is only allowed as percentile's interpolation argument", node)
        if isinstance(node, Col):
            name = self.columns.get(node.name) or self.columns.get(node.name.lower())
            if name is None:
                raise self.fail(f"unknown column '{node.name}'", node)
            node.name = name
            return "num"
        if isinstance(node, Unary):
            self.check(node.operand, in_agg, in_prev)
            return "num" if node.op == "neg" else "bool"
        if isinstance(node, Binary):
            self.check(node.left, in_agg, in_prev)
            self.check(node.right, in_agg, in_prev)
            return "num" if node.op in "+-*/" else "bool"
        return self.call(node, in_agg, in_prev)

    def call(self, node: Call, in_agg: Call | None, in_prev: bool) -> str:
        spec = FUNCTIONS.get(node.name)
        if spec is None:
            hint = suggest_function(node.name)
            raise self.fail(f"unknown function '{node.name}'" + (f"; did you mean '{hint}'?" if hint else ""),
                            node)
        n = len(node.args)
        if not spec.min_args <= n <= spec.max_args:
            want = str(spec.min_args) if spec.min_args == spec.max_args else f"{spec.min_args} to {spec.max_args}"
            raise self.fail(f"{spec.name}() takes {want} argument{'s' if want != '1' else ''}, got {n}", node)
        if spec.kind == "agg":
            if in_agg is not None:
                raise self.fail(f"aggregate {spec.name}() cannot be nested inside {in_agg.name}()", node)
            if in_prev:
                raise self.fail(f"aggregate {spec.name}() cannot be used inside prev()", node)
            if not self.has_window:
                raise self.fail(f"aggregate {spec.name}() needs windowSize and step", node)
            if spec.name == "percentile":
                self.percentile_args(node)
                self.check(node.args[0], node, in_prev)
                return "num"
            for arg in node.args:
                self.check(arg, node, in_prev)
            return "num"
        types = [self.check(arg, in_agg, in_prev or spec.kind == "prev") for arg in node.args]
        return types[0] if spec.kind == "prev" else spec.returns

    def percentile_args(self, node: Call) -> None:
        p = constant_value(node.args[1])
        if p is None or not 0 <= p <= 100:
            raise self.fail("percentile's second argument must be a number from 0 to 100", node.args[1])
        if len(node.args) == 3:
            how = node.args[2]
            if not isinstance(how, Str) or how.value not in INTERPOLATIONS:
                raise self.fail(f"percentile's interpolation must be one of {', '.join(INTERPOLATIONS)}", how)


def constant_value(node: Node) -> float | None:
    """The value of a literal number, possibly negated; None for anything else."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Unary) and node.op == "neg":
        inner = constant_value(node.operand)
        return None if inner is None else -inner
    return None


def column_lookup(columns) -> dict[str, str]:
    """Column names resolve exactly, or case-insensitively when that is unambiguous (DolphinDB
    metric column names are case-insensitive)."""
    lookup = {c: c for c in columns}
    lowered: dict[str, list[str]] = {}
    for c in columns:
        lowered.setdefault(c.lower(), []).append(c)
    for low, names in lowered.items():
        if len(names) == 1 and low not in lookup:
            lookup[low] = names[0]
    return lookup


def analyze(index: int, tree: Node, source: str, columns: dict[str, str], has_window: bool) -> Metric:
    """Validate a parsed metric and classify it. Raises RuleSyntaxError."""
    checker = _Checker(index, columns, has_window)
    kind = checker.check(tree)
    if kind != "bool":
        raise RuleSyntaxError("a metric must be a condition (a comparison, and/or/not, isNull, lt, ...); "
                              f"'{render(tree)}' is a number", tree.pos, index)
    aggregates, prevs, all_cols, row_cols = [], [], set(), set()
    _collect(tree, aggregates, prevs, all_cols, row_cols)
    if not all_cols:
        raise RuleSyntaxError("a metric must read at least one column; this one is constant", tree.pos, index)
    if not aggregates:
        kind = "row"
    else:
        kind = "agg_column" if row_cols else "agg_const"
    return Metric(index, render(tree), source, tree, kind, tuple(sorted(all_cols)),
                  tuple(sorted(row_cols)), aggregates, prevs)


def _collect(node: Node, aggregates: list, prevs: list, all_cols: set, row_cols: set) -> None:
    for n in walk(node):
        if isinstance(n, Col):
            all_cols.add(n.name)
        elif isinstance(n, Call) and FUNCTIONS[n.name].kind == "agg":
            aggregates.append(n)
    # Columns outside aggregates decide between agg_const and agg_column.
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Call) and FUNCTIONS[n.name].kind == "agg":
            continue
        if isinstance(n, Col):
            row_cols.add(n.name)
        stack.extend(n.children())
    # prev() calls in post-order so inner ones are computed before the outer ones use them.
    def post(n: Node) -> None:
        for c in n.children():
            post(c)
        if isinstance(n, Call) and n.name == "prev":
            prevs.append(n)
    post(node)
