"""Parsing, canonical text, classification and every documented RuleSyntaxError."""

import pytest

from detection.rules import RuleSyntaxError, compile_rule
from detection.rules.parser import MAX_METRIC_CHARS

COLS = ["temp", "qty", "price", "x"]


def compile_(metrics, **config):
    config.setdefault("window_size", 6)
    config.setdefault("step", 3)
    return compile_rule(metrics, COLS, **config)


@pytest.mark.parametrize(("source", "canonical"), [
    ("temp>65", "temp > 65"),
    ("temp > percentile(temp,75)", "temp > percentile(temp, 75)"),
    ("  temp   >   percentile( temp , 75 )  ", "temp > percentile(temp, 75)"),
    ("(qty+price)*2>=-1", "(qty + price) * 2 >= -1"),
    ("qty > 1 && !isNull(price)", "qty > 1 && !isNull(price)"),
    ("qty > 1 and not (price < 2)", "qty > 1 and not (price < 2)"),
    ("qty - (price - 1) > 0", "qty - (price - 1) > 0"),
    ("qty<>price", "qty != price".replace("!=", "<>")),
    ("lt(qty,prev(qty))", "lt(qty, prev(qty))"),
    ("percentile(qty, 90, \"nearest\") < 100", 'percentile(qty, 90, "nearest") < 100'),
    ("TEMP > 1.50", "temp > 1.50"),  # column names are case-insensitive, numbers kept as written
])
def test_canonical_text(source, canonical):
    assert compile_(source).metrics[0].text == canonical


@pytest.mark.parametrize(("source", "kind"), [
    ("qty < 4", "row"), ("qty > price", "row"), ("lt(qty, prev(qty))", "row"), ("isNull(qty) == false", "row"),
    ("avg(qty - price) > 10", "agg_const"), ("percentile(qty, 90) < 100", "agg_const"),
    ("max(qty) < avg(qty) * 2", "agg_const"), ("le(sum(qty), 5)", "agg_const"),
    ("avg(qty) > qty", "agg_column"), ("le(med(qty), price)", "agg_column"),
    ("temp > percentile(temp, 75)", "agg_column"),
])
def test_three_metric_classes_from_dolphindb_docs(source, kind):
    assert compile_(source).metrics[0].kind == kind


def test_metrics_as_string_list_and_metacode_agree():
    texts = ["temp > 65", "temp > percentile(temp, 75)"]
    for form in ("temp > 65; temp > percentile(temp, 75)", texts, "<[temp > 65, temp > percentile(temp, 75)]>",
                 "temp > 65; temp > percentile(temp, 75);"):
        plan = compile_(form)
        assert [m.text for m in plan.metrics] == texts
        assert [m.index for m in plan.metrics] == [0, 1]
    assert [m.text for m in compile_("<temp > 65>").metrics] == ["temp > 65"]


def test_metric_columns_are_reported():
    m = compile_("avg(qty) > price + prev(temp)").metrics[0]
    assert m.columns == ("price", "qty", "temp")
    assert m.row_columns == ("price", "temp")


@pytest.mark.parametrize(("source", "fragment", "position", "index"), [
    ("temp > 65; tmp > 1", "unknown column 'tmp'", 11, 1),
    ("foo(temp) > 1", "unknown function 'foo'", 0, 0),
    ("isnull(temp)", "did you mean 'isNull'", 0, 0),
    ("abs(temp, 1) > 1", "abs() takes 1 argument, got 2", 0, 0),
    ("percentile(temp) > 1", "percentile() takes 2 to 3 arguments", 0, 0),
    ("temp + 1", "must be a condition", 0, 0),
    ("avg(temp)", "must be a condition", 0, 0),
    ("avg(max(temp)) > 1", "cannot be nested", 4, 0),
    ("prev(avg(temp)) > 1", "inside prev()", 5, 0),
    ("temp > 1.2.3", "bad number '1.2.3'", 7, 0),
    ("temp > 12abc", "bad number", 7, 0),
    ("temp > 1e999", "out of range", 7, 0),
    ("(temp > 1", "unbalanced '('", 9, 0),
    ("temp > 1)", "unbalanced ')'", 8, 0),
    ("avg(temp > 1", "unbalanced '('", 12, 0),
    ("temp > 1;; qty > 2", "empty metric", 9, 1),
    ("", "empty metric", 0, 0),
    ("   ", "empty metric", 3, 0),
    ("temp >", "operand is missing", 6, 0),
    ("temp > 1 qty", "unexpected 'qty'", 9, 0),
    ("1 < temp < 3", "cannot be chained", 9, 0),
    ("temp = 1", "use '=='", 5, 0),
    ("temp & 1", "'&&'", 5, 0),
    ("temp > 1 # x", "unexpected character '#'", 9, 0),
    ("temp > 'a'", "only allowed as percentile", 7, 0),
    ("percentile(temp, 101) > 1", "from 0 to 100", 17, 0),
    ("percentile(temp, qty) > 1", "from 0 to 100", 17, 0),
    ("percentile(temp, 5, 'cubic') > 1", "interpolation", 20, 0),
    ("1 > 0", "constant", 0, 0),
    ("and > 1", "needs an operand", 0, 0),
    ("temp > 'abc", "unterminated string", 7, 0),
    ("[temp > 1]", "unexpected '['", 0, 0),
])
def test_errors_name_the_problem_and_position(source, fragment, position, index):
    with pytest.raises(RuleSyntaxError) as info:
        compile_(source)
    assert fragment in info.value.message
    assert (info.value.position, info.value.metric_index) == (position, index)
    assert isinstance(info.value, ValueError)


def test_aggregate_needs_window_configuration():
    with pytest.raises(RuleSyntaxError, match="needs windowSize and step") as info:
        compile_rule("temp > 1; avg(temp) > 1", ["temp"])
    assert (info.value.position, info.value.metric_index) == (10, 1)


@pytest.mark.parametrize(("window_size", "step", "fragment"), [
    (6, None, "step must be a positive integer"), (0, 3, "windowSize must be a positive integer"),
    (7, 3, "multiple of step"), (6, -3, "step must be"), (6.5, 3, "windowSize"), ("6", 3, "windowSize"),
])
def test_bad_window_configuration(window_size, step, fragment):
    with pytest.raises(RuleSyntaxError, match=fragment):
        compile_rule("avg(temp) > 1", ["temp"], window_size=window_size, step=step)


def test_time_and_key_columns_are_not_metric_columns():
    with pytest.raises(RuleSyntaxError, match="unknown column 'time'"):
        compile_rule("time > 1", ["time", "temp"])
    with pytest.raises(RuleSyntaxError, match="unknown column 'sym'"):
        compile_rule("sym > 1", ["sym", "temp"], key_column="sym")


def test_list_positions_are_within_the_element():
    with pytest.raises(RuleSyntaxError) as info:
        compile_(["temp > 1", "qty > nope"])
    assert (info.value.position, info.value.metric_index) == (6, 1)


def test_length_and_nesting_limits():
    with pytest.raises(RuleSyntaxError, match="longer than"):
        compile_("temp > " + "1 + " * (MAX_METRIC_CHARS // 4) + "1")
    with pytest.raises(RuleSyntaxError, match="longer than"):
        compile_(["temp > " + "1 + " * (MAX_METRIC_CHARS // 4) + "1"])
    with pytest.raises(RuleSyntaxError, match="nested deeper"):
        compile_("(" * 40 + "temp > 1" + ")" * 40)
    with pytest.raises(RuleSyntaxError, match="nested deeper"):
        compile_("abs(" * 40 + "temp" + ")" * 40 + " > 1")
    with pytest.raises(RuleSyntaxError, match="too long"):
        compile_("temp" + " + temp" * 200 + " > 1")
    with pytest.raises(RuleSyntaxError, match="too many metrics"):
        compile_(["temp > 1"] * 65)
    compile_("(" * 30 + "temp > 1" + ")" * 30)  # within the limit


def test_no_metrics_and_non_string_metrics():
    with pytest.raises(RuleSyntaxError, match="no metrics"):
        compile_([])
    with pytest.raises(RuleSyntaxError, match="must be strings"):
        compile_([1])
