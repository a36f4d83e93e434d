"""Every function of the metric language, row-level and aggregate, including NULL handling."""

import math

import numpy as np
import pytest

from .helpers import row_values, window_value

NAN = math.nan
DOC = [6, 47, 49, 15, 42, 41, 7, 39, 43, 40, 36]  # DolphinDB's percentile documentation example


@pytest.mark.parametrize(("expr", "expected"), [
    ("percentile(x, 50)", 40), ("percentile(x, 54)", 40.4), ("percentile(x, 25, 'lower')", 15),
    ("percentile(x, 75, 'higher')", 43), ("percentile(x, 5, 'midpoint')", 6.5),
    ("percentile(x, 5, 'nearest')", 6), ("percentile(x, 0)", 6), ("percentile(x, 100)", 49),
    ("med(x)", 40),
])
def test_percentile_matches_dolphindb_documentation(expr, expected):
    assert window_value(expr, DOC) == pytest.approx(expected)


def test_nearest_breaks_ties_downwards_like_dolphindb():
    # cumpercentile(1..10, 25, 'nearest') has 2 at n=7: position 1.5 rounds down.
    assert window_value("percentile(x, 25, 'nearest')", list(range(1, 8))) == 2


@pytest.mark.parametrize(("expr", "expected"), [
    ("avg(x)", 2.5), ("sum(x)", 10), ("min(x)", 1), ("max(x)", 4), ("count(x)", 4),
    ("std(x)", np.std([1, 2, 3, 4], ddof=1)), ("var(x)", np.var([1, 2, 3, 4], ddof=1)), ("med(x)", 2.5),
    ("first(x)", 3), ("last(x)", 2), ("wavg(x, w)", (3 * 1 + 1 * 2 + 4 * 3 + 2 * 4) / 10),
    ("avg(x * 2 + 1)", 6), ("sum(x > 2)", 2), ("max(abs(x - 3))", 2),
])
def test_aggregates(expr, expected):
    assert window_value(expr, [3, 1, 4, 2]) == pytest.approx(expected)


@pytest.mark.parametrize(("expr", "expected"), [
    ("avg(x)", 2), ("sum(x)", 4), ("count(x)", 2), ("min(x)", 1), ("max(x)", 3), ("med(x)", 2),
    ("std(x)", math.sqrt(2)), ("first(x)", NAN), ("last(x)", 3), ("wavg(x, w)", (1 * 2 + 3 * 3) / 5),
])
def test_aggregates_ignore_nulls(expr, expected):
    value = window_value(expr, [NAN, 1, 3])
    assert (value is None) if math.isnan(expected) else value == pytest.approx(expected)


@pytest.mark.parametrize(("expr", "expected"), [
    ("sum(x)", None), ("avg(x)", None), ("count(x)", 0), ("max(x)", None), ("percentile(x, 90)", None),
    ("std(x)", None),
])
def test_aggregates_of_only_nulls(expr, expected):
    assert window_value(expr, [NAN, NAN]) == expected


def test_var_of_one_value_is_null():
    assert window_value("var(x)", [5]) is None


@pytest.mark.parametrize(("expr", "x", "y", "expected"), [
    ("x > y", [1, 2, 3], [2, 2, 2], [False, False, True]),
    ("x >= y", [1, 2, 3], [2, 2, 2], [False, True, True]),
    ("x < y", [1, 2, 3], [2, 2, 2], [True, False, False]),
    ("x <= y", [1, 2, 3], [2, 2, 2], [True, True, False]),
    ("x == y", [1, 2, 3], [2, 2, 2], [False, True, False]),
    ("x != y", [1, 2, 3], [2, 2, 2], [True, False, True]),
    ("x <> y", [1, 2, 3], [2, 2, 2], [True, False, True]),
    ("lt(x, y)", [1, 2, 3], [2, 2, 2], [True, False, False]),
    ("le(x, y)", [1, 2, 3], [2, 2, 2], [True, True, False]),
    ("gt(x, y)", [1, 2, 3], [2, 2, 2], [False, False, True]),
    ("ge(x, y)", [1, 2, 3], [2, 2, 2], [False, True, True]),
    ("eq(x, y)", [1, 2, 3], [2, 2, 2], [False, True, False]),
    ("ne(x, y)", [1, 2, 3], [2, 2, 2], [True, False, True]),
    ("abs(x) > 1.5", [-2, 1, 2], [0, 0, 0], [True, False, True]),
    ("log(x) > 0.5", [1, 2.718281828, 0], [0, 0, 0], [False, True, False]),
    ("isNull(x)", [NAN, 1, NAN], [0, 0, 0], [True, False, True]),
    ("isNull(x) == false", [NAN, 1, NAN], [0, 0, 0], [False, True, False]),
    ("x / y > 1", [1, 4, 3], [0, 2, 0], [False, True, False]),  # x/0 is NULL, not inf
    ("isNull(x / y)", [1, 4, 3], [0, 2, 0], [True, False, True]),
    ("x - y * 2 == -3", [1, 4, 3], [2, 2, 2], [True, False, False]),
    ("-(x + y) < -4", [1, 4, 3], [2, 2, 2], [False, True, True]),
    ("(x > 1) + (y > 1) == 2", [1, 4, 3], [2, 2, 0], [False, True, False]),
    ("x > 1 and y > 1", [1, 4, 3], [2, 2, 0], [False, True, False]),
    ("x > 1 && y > 1", [1, 4, 3], [2, 2, 0], [False, True, False]),
    ("x > 1 or y > 1", [1, 4, 3], [0, 2, 0], [False, True, True]),
    ("x > 1 || y > 1", [1, 4, 3], [0, 2, 0], [False, True, True]),
    ("not x > 1", [1, 4, 3], [0, 0, 0], [True, False, False]),
    ("!(x > 1)", [1, 4, 3], [0, 0, 0], [True, False, False]),
    ("x and y", [1, 0, NAN], [1, 1, 1], [True, False, False]),
])
def test_row_level_operators_and_functions(expr, x, y, expected):
    assert row_values(expr, x=x, y=y) == expected


@pytest.mark.parametrize(("expr", "expected"), [
    ("x > 1", [False, False, True]), ("x < 2", [False, True, False]), ("x != 1", [False, False, True]),
    ("x == x", [False, True, True]), ("not x > 1", [True, True, False]),
])
def test_comparisons_with_null_are_false(expr, expected):
    assert row_values(expr, x=[NAN, 1, 2]) == expected


def test_prev_is_the_previous_row_and_null_first():
    assert row_values("x > prev(x)", x=[1, 2, 2, 3]) == [False, True, False, True]
    assert row_values("isNull(prev(x))", x=[1, 2, 3]) == [True, False, False]
    assert row_values("x > prev(prev(x)) + 1", x=[1, 1, 3, 2, 5]) == [False, False, True, False, True]
    assert row_values("lt(x, prev(x))", x=[3, 2, 5]) == [False, True, False]
