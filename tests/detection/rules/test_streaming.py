"""Properties: any batch split gives the one-batch output; the engine agrees with a naive
row-at-a-time model; snapshot + restore mid-stream continues without gap or duplicate."""

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detection.rules import RuleEngine, compile_rule

from .reference import reference_outputs

RULES = [
    "x > 3; x > avg(x); max(y) > 4",
    "x > prev(x) + 1 and y < 5; percentile(x, 75) > y; count(x) >= 2",
    "std(x) > 1; x > med(x) + prev(y); wavg(x, y) < 3; first(x) < last(x)",
    "sum(x - prev(x)) > 2; isNull(y) or x > min(y); var(y) > 2 and avg(x) < 5",
    "percentile(x, 30, 'nearest') < x; avg(x) * 2 > max(y); lt(x, prev(prev(x)))",
    # Row metrics only (no window, no prev): the engine's arrival-order path.
    "x > 3; isNull(y) or x * 2 < y; not (x != y)",
    "x / y > 1 and abs(x - 5) <= 2",
]
WINDOWS = [(2, 1), (4, 2), (6, 3), (5, 5), (9, 3)]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def streams(draw):
    rule = draw(st.sampled_from(RULES))
    window_size, step = draw(st.sampled_from(WINDOWS))
    keyed = draw(st.booleans())
    n = draw(st.integers(1, 60))
    # Mostly forward time with repeats, some jumps and an occasional step back (a late row).
    deltas = draw(st.lists(st.sampled_from([0, 1, 1, 2, 3, 7, 20, -4]), min_size=n, max_size=n))
    start = draw(st.integers(0, 50))
    times = start + np.cumsum(deltas)
    value = st.one_of(st.integers(0, 9).map(float), st.just(math.nan), st.sampled_from([0.5, 2.5]))
    xs = draw(st.lists(value, min_size=n, max_size=n))
    ys = draw(st.lists(value, min_size=n, max_size=n))
    # str keys; int keys (lookup table), sparse and dense
    names = draw(st.sampled_from([["a", "b", "c"], [3, 7, 1000], [0, 1, 2]]))
    keys = draw(st.lists(st.sampled_from(names), min_size=n, max_size=n)) if keyed else None
    plan = compile_rule(rule, ["x", "y"], key_column="k" if keyed else None, window_size=window_size,
                        step=step)
    batch = {"time": np.asarray(times, dtype=np.int64), "x": np.array(xs), "y": np.array(ys)}
    if keyed:
        batch["k"] = np.array(keys, dtype=object if isinstance(keys[0], str) else np.int64)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(n - 1, 1)), max_size=6))) - {n})
    return plan, batch, cuts


def _slice(batch, lo, hi):
    return {k: v[lo:hi] for k, v in batch.items()}


def _key(o):
    return (o.time, o.key, o.metric_index, o.metric_text, o.msg_id, o.window,
            tuple(sorted((k, v) for k, v in o.observed.items())))


def _run_split(plan, batch, cuts, engine=None):
    engine = engine or RuleEngine(plan)
    n = len(batch["time"])
    bounds = [0, *cuts, n]
    out = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        out += engine.process(_slice(batch, lo, hi), np.arange(lo, hi))
    return out, engine


@SETTINGS
@given(streams())
def test_any_batch_split_gives_the_one_batch_output(stream):
    plan, batch, cuts = stream
    whole = RuleEngine(plan).process(batch)
    split, _ = _run_split(plan, batch, cuts)
    assert [_key(o) for o in split] == [_key(o) for o in whole]
    one_by_one, _ = _run_split(plan, batch, list(range(1, len(batch["time"]))))
    assert [_key(o) for o in one_by_one] == [_key(o) for o in whole]


@SETTINGS
@given(streams())
def test_engine_matches_the_row_at_a_time_model(stream):
    plan, batch, _ = stream
    keys = batch["k"].tolist() if "k" in batch else [None] * len(batch["time"])
    rows = [{"time": int(batch["time"][i]), "key": keys[i], "msg_id": i,
             "x": batch["x"][i], "y": batch["y"][i]} for i in range(len(batch["time"]))]
    expected = reference_outputs(plan, rows)
    got = RuleEngine(plan).process(batch)
    assert [(o.time, o.key, o.metric_index, o.msg_id) for o in got] == [e[:4] for e in expected]
    for o, e in zip(got, expected, strict=True):
        assert o.observed.keys() == e[4].keys()
        for name, value in o.observed.items():
            want = e[4][name]
            assert (value is None and math.isnan(want)) or math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-9)


@SETTINGS
@given(streams(), st.data())
def test_snapshot_and_restore_mid_stream_equals_uninterrupted(stream, data):
    plan, batch, cuts = stream
    n = len(batch["time"])
    uninterrupted = [_key(o) for o in RuleEngine(plan).process(batch)]
    at = data.draw(st.integers(0, n))
    first, engine = _run_split(plan, _slice(batch, 0, at), [c for c in cuts if c < at])
    blob = engine.snapshot()
    assert engine.snapshot_msg_id == at - 1
    restored = RuleEngine.restore(plan, blob)
    # Re-deliver from an earlier offset (at-least-once): already-included messages are skipped.
    replay_from = data.draw(st.integers(0, at))
    rest = restored.process(_slice(batch, replay_from, n), np.arange(replay_from, n))
    assert [_key(o) for o in first + rest] == uninterrupted


@SETTINGS
@given(streams())
def test_row_rules_give_the_same_outputs_and_state_as_the_per_key_path(stream):
    """Rules without windows or prev() skip sorting by key and encode keys only for rows that
    fire; forcing the general per-key path must change nothing observable."""
    plan, batch, cuts = stream
    plan = compile_rule([m.text for m in plan.metrics if m.kind == "row" and not m.prevs] or "x > 3", ["x", "y"],
                        key_column=plan.key_column)
    fast, general = RuleEngine(plan), RuleEngine(plan)
    general._per_key = True
    assert not fast._per_key
    got, _ = _run_split(plan, batch, cuts, fast)
    want, _ = _run_split(plan, batch, cuts, general)
    assert [_key(o) for o in got] == [_key(o) for o in want]
    assert fast.stats() == general.stats()  # numGroups, numRows, replays, outputs, memory
    assert fast._state.keys.values == general._state.keys.values
