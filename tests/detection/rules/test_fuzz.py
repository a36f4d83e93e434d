"""Fuzzing: any text either compiles (and then runs) or raises the documented RuleSyntaxError."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detection.rules import RuleEngine, RuleSyntaxError, compile_rule

VOCABULARY = [
    "x", "y", "X", "nope", "1", "2.5", "0", "-", "+", "*", "/", "<", "<=", ">", ">=", "==", "!=", "<>", "=",
    "&&", "||", "!", "&", "and", "or", "not", "true", "false", "(", ")", ",", ";", "[", "]", "'linear'",
    "'nearest'", '"x"', "'", "1e5", "1e999", "1.2.3", ".5", "abs", "log", "isNull", "prev", "lt", "ge", "ne",
    "avg", "sum", "min", "max", "count", "std", "var", "med", "percentile", "first", "last", "wavg", "next",
    "#", "\n", " ", "é", "\x00",
]
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BATCH = {"time": np.array([0, 1, 2, 5, 9, 9, 20], dtype=np.int64),
         "x": np.array([1.0, np.nan, 3.0, 0.0, -2.0, 5.0, 1.0]), "y": np.array([0.0, 2.0, np.nan, 1.0, 0.0, 4.0, 2.0])}


def _compile_and_run(text_or_list):
    try:
        plan = compile_rule(text_or_list, ["x", "y"], window_size=4, step=2)
    except RuleSyntaxError as exc:
        assert exc.message
        assert exc.position is None or exc.position >= 0
        return
    # Whatever compiles must also evaluate without error.
    engine = RuleEngine(plan)
    engine.process(BATCH)
    RuleEngine.restore(plan, engine.snapshot())


@FUZZ
@given(st.text(max_size=300))
def test_random_text_only_raises_rule_syntax_error(text):
    _compile_and_run(text)


@FUZZ
@given(st.lists(st.sampled_from(VOCABULARY), max_size=40))
def test_token_soup_only_raises_rule_syntax_error(tokens):
    _compile_and_run(" ".join(tokens))
    _compile_and_run("".join(tokens))


@FUZZ
@given(st.lists(st.lists(st.sampled_from(VOCABULARY), max_size=15).map(" ".join), max_size=4))
def test_metric_lists_only_raise_rule_syntax_error(metrics):
    _compile_and_run(metrics)


_atoms = st.sampled_from(["x", "y", "1", "2.5", "prev(x)", "abs(y)", "log(x)"])
_exprs = st.recursive(_atoms, lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    inner.map(lambda e: f"avg({e})"), inner.map(lambda e: f"percentile({e}, 60)"),
    inner.map(lambda e: f"std({e})"), inner.map(lambda e: f"-{e}")), max_leaves=8)


@FUZZ
@given(_exprs, st.sampled_from(["<", ">=", "==", "!="]), _exprs)
def test_well_formed_grammar_compiles_or_fails_cleanly(left, op, right):
    _compile_and_run(f"{left} {op} {right}")
