"""watchlists.api.points._rows: [[ts, *values], ...] of plain Python values, NaN kept (orjson
renders it null), for both time formats; empty pages and pages without value columns too."""

import math

import numpy as np
import orjson
import pytest

from watchlists.api.points import _format_times, _rows


@pytest.mark.parametrize("time_format", ["iso", "epoch_ms"])
def test_rows_are_plain_values_row_by_row(time_format):
    ts = np.array([1_700_000_000_000_000, 1_700_000_060_000_000, 1_700_000_120_000_000], dtype=np.int64)
    data = {"ts": ts, "price": np.array([1.5, np.nan, -0.0]), "size": np.array([100.0, 200.0, 300.0]),
            "extra": np.array([9.0, 9.0, 9.0, 9.0])}  # longer than the page: cut to `limit`
    times = _format_times(ts, time_format)
    rows = _rows(times, data, ["price", "size", "extra"], 3)
    assert [r[0] for r in rows] == times and [r[2:] for r in rows] == [[100.0, 9.0], [200.0, 9.0], [300.0, 9.0]]
    assert rows[0][1] == 1.5 and math.isnan(rows[1][1]) and math.copysign(1, rows[2][1]) == -1
    assert {type(v) for r in rows for v in r[1:]} == {float} and type(rows[0][0]) is type(times[0])
    assert orjson.dumps(rows[1]) == orjson.dumps([times[1], None, 200.0, 9.0])


def test_empty_pages_and_no_columns():
    assert _rows([], {"price": np.array([])}, ["price"], 10) == []
    assert _rows(["a", "b"], {}, [], 10) == [["a"], ["b"]]
