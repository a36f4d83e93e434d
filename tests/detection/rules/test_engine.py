"""Engine semantics: seed 002's Example 1, the window classes, keys, late rows, replays, stats."""

import numpy as np
import pytest

from detection.rules import RuleEngine, compile_rule

from .helpers import EXAMPLE_1_START, example_1_batch, run

T0 = EXAMPLE_1_START - 2  # 2018.10.08T01:01:01.000


def test_example_1_outputs_exactly_the_seed_rows():
    outputs = run("temp > 65; temp > percentile(temp, 75)", example_1_batch(), window_size=6, step=3)
    assert [(o.time - T0, o.metric_index, o.metric_text) for o in outputs] == [
        (3, 0, "temp > 65"),
        (3, 1, "temp > percentile(temp, 75)"),
        (5, 1, "temp > percentile(temp, 75)"),
        (6, 1, "temp > percentile(temp, 75)"),
    ]
    assert [o.msg_id for o in outputs] == [1, 1, 3, 4]
    assert outputs[0].observed == {"temp": 66.0}
    assert outputs[1].observed == {"temp": 66.0, "percentile(temp, 75)": 59.0}
    assert outputs[1].window == (T0 - 3, T0 + 3)


def _thresholds(method: str) -> dict:
    """75th-percentile threshold each row of Example 1 is compared with (by ms)."""
    pct = f"percentile(temp, 75{method})"
    outputs = run(f"temp > {pct} or temp <= {pct}", example_1_batch(), window_size=6, step=3)
    return {o.time - T0: o.observed[pct] for o in outputs}


def test_example_1_windows_follow_the_narrative():
    # Row .002 has no previous window; .003-.005 use [-3, 3), .006-.008 [0, 6), .009-.011 [3, 9).
    linear = _thresholds("")
    assert sorted(linear) == list(range(3, 12))
    assert [linear[t] for t in (3, 6, 9)] == [59, 61.5, 62.25]
    # The narrative's thresholds 59, 60, 63 are what 'nearest' interpolation gives; the default
    # (DolphinDB's documented 'linear') gives 61.5 and 62.25, with the same four outputs.
    nearest = _thresholds(", 'nearest'")
    assert [nearest[t] for t in (3, 6, 9)] == [59, 60, 63]


def test_aggregate_vs_constant_reports_at_window_end_when_a_row_reaches_it():
    plan = compile_rule("max(temp) > 60", ["temp"], window_size=6, step=3)
    engine = RuleEngine(plan)
    outputs = engine.process(example_1_batch())
    # [-3,3) max 59: no; [0,6) max 66: at 6, closed by row .006 (msg 4); [3,9) at 9 by .009.
    assert [(o.time - T0, o.msg_id, o.observed["max(temp)"], o.window) for o in outputs] == [
        (6, 4, 66.0, (T0, T0 + 6)), (9, 7, 66.0, (T0 + 3, T0 + 9))]
    # Window [6, 12) waits for data: the engine halts after .011 until a row reaches 12.
    more = engine.process({"time": np.array([T0 + 12]), "temp": np.array([0.0])})
    assert [(o.time - T0, o.msg_id, o.observed["max(temp)"]) for o in more] == [(12, 10, 63.0)]


def test_empty_windows_are_not_evaluated():
    batch = {"time": np.array([0, 1, 50, 51]), "x": np.array([1.0, 2.0, 3.0, 4.0])}
    outputs = run("count(x) < 5", batch, window_size=4, step=2)
    # Windows holding rows .0/.1 end at 2 and 4 (closed by the row at 50); nothing in between.
    assert [o.time for o in outputs] == [2, 4]
    assert all(o.msg_id == 2 for o in outputs)


def test_aggregate_vs_column_with_an_empty_previous_window_is_null():
    batch = {"time": np.array([0, 1, 50]), "x": np.array([1.0, 2.0, 3.0])}
    assert run("x > avg(x)", batch, window_size=2, step=2) == []
    assert [o.msg_id for o in run("isNull(avg(x)) and x > 0", batch, window_size=2, step=2)] == [2]


def test_keys_share_aligned_windows_and_keep_separate_state():
    # Key A arrives first at .002 and aligns everyone: windows end at 3, 6, 9, ...
    batch = {"time": np.array([2, 4, 5, 6, 7, 9]), "sym": np.array(["A", "B", "A", "B", "A", "B"], dtype=object),
             "x": np.array([10.0, 1.0, 20.0, 2.0, 30.0, 3.0])}
    outputs = run("sum(x) > 0", batch, window_size=3, step=3, key_column="sym")
    got = [(o.time, o.key, o.observed["sum(x)"]) for o in outputs]
    # Ordered by the row that closed each window: A@5, B@6, A@7, B@9.
    assert got == [(3, "A", 10.0), (6, "B", 1.0), (6, "A", 20.0), (9, "B", 2.0)]
    prev = run("x > prev(x)", batch, key_column="sym")
    assert [(o.time, o.key) for o in prev] == [(5, "A"), (6, "B"), (7, "A"), (9, "B")]


def test_integer_keys_and_none_key_output():
    batch = {"time": np.array([0, 0, 1]), "series": np.array([7, 8, 7]), "x": np.array([5.0, 1.0, 6.0])}
    assert [(o.key, o.time) for o in run("x > 2", batch, key_column="series")] == [(7, 0), (7, 1)]
    assert [o.key for o in run("x > 2", {"time": batch["time"], "x": batch["x"]})] == [None, None]


def test_late_rows_are_dropped_for_aggregate_rules_and_counted():
    plan = compile_rule("x > avg(x)", ["x"], window_size=2, step=2, key_column="k")
    engine = RuleEngine(plan)
    batch = {"time": np.array([0, 5, 3, 6, 1]), "k": np.array([1, 1, 1, 2, 2]), "x": np.array([1.0, 2, 9, 1, 9])}
    engine.process(batch)
    assert engine.stats()["numLateRows"] == 2  # k=1 at 3 after 5; k=2 at 1 after 6
    stats = engine.stats()
    assert stats["numRows"] + stats["numLateRows"] == 5


def test_rules_without_aggregates_accept_any_order():
    batch = {"time": np.array([5, 1, 3]), "x": np.array([1.0, 9.0, 9.0])}
    assert [o.time for o in run("x > 2", batch)] == [1, 3]


def test_replayed_msg_ids_are_skipped():
    plan = compile_rule("x > 2", ["x"])
    engine = RuleEngine(plan)
    batch = {"time": np.array([0, 1, 2]), "x": np.array([3.0, 3.0, 3.0])}
    assert [o.msg_id for o in engine.process(batch, np.array([10, 11, 12]))] == [10, 11, 12]
    assert [o.msg_id for o in engine.process(batch, np.array([11, 12, 13]))] == [13]
    assert engine.stats()["numReplayedRows"] == 2


def test_msg_ids_must_increase():
    engine = RuleEngine(compile_rule("x > 2", ["x"]))
    with pytest.raises(ValueError, match="increasing"):
        engine.process({"time": np.array([0, 1]), "x": np.array([1.0, 2.0])}, np.array([5, 5]))
    assert "increasing" in engine.stats()["lastErrMsg"]


def test_missing_columns_are_reported():
    engine = RuleEngine(compile_rule("x > 2", ["x"]))
    with pytest.raises(KeyError, match="no column 'x'"):
        engine.process({"time": np.array([0])})
    with pytest.raises(KeyError, match="no time column"):
        engine.process({"x": np.array([0.0])})


def test_datetime64_times_are_converted_to_the_precision():
    times = np.array(["2018-10-08T01:01:01", "2018-10-08T01:01:02"], dtype="datetime64[s]")
    outputs = run("x > 1", {"time": times, "x": np.array([2.0, 0.0])}, precision="ms")
    assert outputs[0].time == 1538960461000


def test_round_time_changes_alignment_for_long_steps():
    # step 2 minutes in ms: roundTime aligns to 2 minutes, otherwise to 1 minute.
    start = 60_000 * 3 + 5  # 00:03:00.005
    batch = {"time": np.array([start, start + 120_000 * 2]), "x": np.array([1.0, 1.0])}
    rounded = run("count(x) > 0", batch, window_size=120_000, step=120_000)
    plain = run("count(x) > 0", batch, window_size=120_000, step=120_000, round_time=False)
    assert rounded[0].time == 120_000 * 2  # aligned to 00:02:00, first window ends 00:04:00
    assert plain[0].time == 60_000 * 3 + 120_000  # aligned to 00:03:00, ends 00:05:00


@pytest.mark.parametrize(("precision", "first", "step", "expected_end"), [
    ("s", 1_000_007, 10, 1_000_010), ("ns", 1_000_000_000_000_000_123, 100, 1_000_000_000_000_000_200),
    ("min", 100_003, 15, 100_005), ("date", 19_000, 7, 19_007),
])
def test_every_precision_aligns_the_first_window(precision, first, step, expected_end):
    batch = {"time": np.array([first, first + 10 * step]), "x": np.array([1.0, 1.0])}
    outputs = run("count(x) > 0", batch, window_size=step, step=step, precision=precision)
    assert outputs[0].time == expected_end


def test_stats_look_like_get_stream_engine_stat():
    plan = compile_rule("temp > 65; temp > percentile(temp, 75)", ["temp"], window_size=6, step=3)
    engine = RuleEngine(plan, name="engine1", snapshot_interval=5)
    engine.process(example_1_batch())
    stats = engine.stats()
    assert {k: stats[k] for k in ("name", "status", "lastErrMsg", "numGroups", "numRows", "numMetrics",
                                  "metrics", "snapshotMsgId")} == {
        "name": "engine1", "status": "OK", "lastErrMsg": "", "numGroups": 1, "numRows": 10, "numMetrics": 2,
        "metrics": "temp > 65, temp > percentile(temp, 75)", "snapshotMsgId": -1}
    assert stats["memoryUsed"] > 0 and stats["alignmentSize"] == 5
    assert engine.should_snapshot()
    engine.snapshot()
    assert not engine.should_snapshot() and engine.snapshot_msg_id == 9
    assert engine.stats()["snapshotTimestamp"] is not None


def test_snapshot_is_refused_by_another_plan():
    plan = compile_rule("x > 1", ["x"])
    blob = RuleEngine(plan).snapshot()
    with pytest.raises(ValueError, match="different rule"):
        RuleEngine.restore(compile_rule("x > 2", ["x"]), blob)
    with pytest.raises(ValueError, match="not a rules snapshot"):
        RuleEngine.restore(plan, b"\x93garbage")


def test_buffer_is_pruned_to_the_open_windows():
    plan = compile_rule("avg(x) > x", ["x"], window_size=10, step=5)
    engine = RuleEngine(plan)
    engine.process({"time": np.arange(10_000), "x": np.ones(10_000)})
    assert engine.stats()["memoryUsed"] < 2_000


def test_empty_batches_are_harmless():
    engine = RuleEngine(compile_rule("x > avg(x)", ["x"], window_size=2, step=1, key_column="k"))
    empty = {"time": np.array([], dtype=np.int64), "x": np.array([]), "k": np.array([], dtype=object)}
    assert engine.process(empty) == []
    assert engine.stats()["numRows"] == 0 and engine.stats()["windowOrigin"] is None


def test_mixed_key_types_are_a_value_error():
    engine = RuleEngine(compile_rule("x > 1", ["x"], key_column="k"))
    with pytest.raises(ValueError, match="one type"):
        engine.process({"time": np.array([0, 1]), "x": np.array([2.0, 2.0]), "k": np.array(["a", None])})
    assert engine.stats()["status"] == "OK"
    assert engine.stats()["numRows"] == 0 and engine.last_msg_id == -1  # the batch can be retried
    assert len(engine.process({"time": np.array([0, 1]), "x": np.array([2.0, 2.0]), "k": np.array(["a", "b"])})) == 2


def test_row_rules_count_every_key_even_those_that_never_fire():
    # Row rules encode keys only for the rows that fire; numGroups must still see every key.
    engine = RuleEngine(compile_rule("x > 100", ["x"], key_column="k"))
    out = engine.process({"time": np.arange(4), "k": np.array([5, 6, 5, 9]), "x": np.array([1.0, 2, 3, 200])})
    assert [(o.key, o.msg_id) for o in out] == [(9, 3)] and engine.stats()["numGroups"] == 3
    out = engine.process({"time": np.arange(3), "k": np.array([7, 9, 6]), "x": np.array([101.0, 1, 102])})
    assert [(o.key, o.msg_id) for o in out] == [(7, 4), (6, 6)] and engine.stats()["numGroups"] == 4
    assert engine.stats()["numRows"] == 7 and engine.last_msg_id == 6
