"""Evaluate a metric tree over numpy arrays. Leaves that need engine state (columns, prev()
values, window aggregates) come from a lookup the engine provides."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .functions import FUNCTIONS, arithmetic, as_float, compare, logical, row_function, truth
from .nodes import Binary, Bool, Call, Col, Node, Num, Unary

Leaf = Callable[[Node], np.ndarray]


def evaluate(node: Node, leaf: Leaf):
    """Value of `node`: an array, or a scalar when it is constant. `leaf` resolves Col nodes
    and prev/aggregate calls; everything else is computed here."""
    # The most frequent node types are tested first: this runs for every batch.
    if isinstance(node, Binary):
        a, b = evaluate(node.left, leaf), evaluate(node.right, leaf)
        if node.op in ("and", "or"):
            return logical(node.op, a, b)
        if node.op in "+-*/":
            return arithmetic(node.op, a, b)
        return compare(node.op, a, b)
    if isinstance(node, Col):
        return leaf(node)
    if isinstance(node, Num):
        return np.float64(node.value)
    if isinstance(node, Bool):
        return np.bool_(node.value)
    if isinstance(node, Unary):
        value = evaluate(node.operand, leaf)
        return -as_float(value) if node.op == "neg" else ~truth(value)
    assert isinstance(node, Call)
    if FUNCTIONS[node.name].kind in ("agg", "prev"):
        return leaf(node)
    return row_function(node.name, [evaluate(a, leaf) for a in node.args])


def where_true(node: Node, leaf: Leaf, n: int) -> np.ndarray:
    """Indexes of the rows (or windows), out of n, where a metric holds, ascending."""
    with np.errstate(all="ignore"):
        holds = truth(evaluate(node, leaf))
    if np.ndim(holds) == 0:  # a constant metric, e.g. "1 > 0"
        return np.arange(n) if holds else np.zeros(0, dtype=np.intp)
    return holds.nonzero()[0]


def values(node: Node, leaf: Leaf, n: int) -> np.ndarray:
    """A numeric expression as a float array of length n (constants are broadcast)."""
    if isinstance(node, Col):  # the usual aggregate argument: the column itself, already float64
        return leaf(node)
    with np.errstate(all="ignore"):
        return np.broadcast_to(as_float(evaluate(node, leaf)), (n,)).astype(np.float64, copy=False)
