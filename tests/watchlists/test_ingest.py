"""The JSON fast path (ingest.points_from_json) must be the pandas path, only cheaper: same points
for every regular batch, and the pandas path (with its row errors) for everything else."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchlists import ingest

MS_2024 = 1_704_205_800_000  # 2024-01-02T14:30:00Z


def _pandas(rows, kind, tz="UTC"):
    return ingest.validate(ingest.frame_from_json(rows), kind, tz)


def _same(a, b):
    assert a.kind == b.kind
    np.testing.assert_array_equal(a.ts, b.ts)
    assert a.values.keys() == b.values.keys()
    for column in a.values:
        np.testing.assert_array_equal(a.values[column], b.values[column])
    assert (a.trade_id is None) == (b.trade_id is None)


numbers = st.one_of(st.integers(1, 10**9), st.floats(0.01, 1e9, allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-10**9, 10**9), numbers, st.integers(0, 10**6)), min_size=1, max_size=40),
       st.booleans())
def test_regular_ticks_take_the_fast_path_and_equal_the_pandas_path(rows, iso):
    def ts(offset):
        if not iso:
            return MS_2024 + offset
        value = np.datetime64(MS_2024 + offset, "ms").astype(str)
        return value + "Z"
    batch = [{"ts": ts(o), "price": p, "size": z} for o, p, z in rows]
    fast = ingest._regular_json(batch, "trade")
    assert fast is not None
    _same(fast, _pandas(batch, "trade"))
    _same(ingest.points_from_json(batch, "trade"), _pandas(batch, "trade"))


def test_regular_bars_dedupe_like_the_pandas_path():
    bars = [{"ts": MS_2024 + 60_000 * (i % 3), "open": 10 + i, "high": 12 + i, "low": 9 + i, "close": 11 + i,
             "volume": 100 * i} for i in range(7)]
    fast = ingest._regular_json(bars, "bar")
    assert fast is not None and len(fast) == 3
    _same(fast, _pandas(bars, "bar"))


@pytest.mark.parametrize("rows", [
    [{"ts": MS_2024, "price": True, "size": 1}],  # a boolean is not a number
    [{"ts": MS_2024, "price": "12.5", "size": 1}],  # numbers as text: pandas coerces them
    [{"ts": MS_2024, "Price": 12.5, "size": 1}],  # names are normalised by the pandas path
    [{"ts": MS_2024, "price": 12.5, "size": 1, "exchange": "Q"}],  # an ignored extra column
    [{"ts": MS_2024, "price": 12.5, "size": 1}, {"ts": MS_2024, "size": 1, "price": 1, "x": 2}],
    [{"ts": "2024-01-02 09:30:00", "price": 12.5, "size": 1}],  # naive local time: the series' zone
    [{"ts": 1e17, "price": 12.5, "size": 1}],  # outside the time range
    [{"ts": MS_2024, "price": -1, "size": 1}],  # fails a rule: pandas lists the error
    [{"ts": MS_2024, "price": 12.5, "size": None}],
    [{"ts": MS_2024, "price": 12.5, "size": 1, "trade_id": "a"}],
    [],
    {"ts": MS_2024},
])
def test_irregular_batches_go_to_the_pandas_path(rows):
    assert ingest._regular_json(rows, "trade") is None


def test_a_rule_violation_still_names_the_row():
    rows = [{"ts": MS_2024, "price": 1.0, "size": 1}, {"ts": MS_2024 + 1, "price": 0.0, "size": 1}]
    with pytest.raises(ingest.BatchInvalid) as info:
        ingest.points_from_json(rows, "trade")
    assert info.value.details["errors"] == [{"row": 2, "column": "price", "reason": "price must be positive"}]


@pytest.mark.parametrize("ts", ["2024-01-02T14:30:00Z,garbage", "2024-01-02T14:30:00Z, 99 bottles"])
def test_a_time_with_anything_after_a_comma_is_an_error_on_both_paths(ts):
    rows = [{"ts": ts, "price": 1.0, "size": 1}]
    assert ingest._regular_json(rows, "trade") is None
    with pytest.raises(ingest.BatchInvalid) as info:
        ingest.points_from_json(rows, "trade")
    assert info.value.details["errors"][0]["column"] == "ts"


@pytest.mark.parametrize("row", [{"ts": 10**400, "price": 1.0, "size": 1},
                                 {"ts": MS_2024, "price": 10**400, "size": 1}])
def test_a_number_beyond_float_range_is_a_row_error_not_a_crash(row):
    with pytest.raises(ingest.BatchInvalid) as info:
        ingest.points_from_json([{"ts": MS_2024, "price": 1.0, "size": 1}, row], "trade")
    (error,) = info.value.details["errors"]
    assert error["row"] == 2 and error["reason"] == "number too large" and row[error["column"]] == 10**400
