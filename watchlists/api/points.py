"""The read side of /points/ and /features/: time-paginated, with a stated limit."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import numpy as np
import orjson
from rest_framework.renderers import JSONRenderer

from .. import timerange
from ..models import Series
from ..store.timeconv import from_us, to_us

DEFAULT_SPAN = timedelta(days=1)


class PointsJSONRenderer(JSONRenderer):
    """orjson for the point pages (a day of 1-minute bars: 1.1 ms with DRF's json.dumps, 0.1 ms).

    Pages carry missing values as NaN, which orjson writes as null; the other paths (indented
    output for the browsable API, bodies orjson cannot encode such as lazy error strings) go
    through DRF's encoder after the same NaN -> None."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        if self.get_indent(accepted_media_type, renderer_context or {}) is None:
            try:
                return orjson.dumps(data)
            except TypeError:
                pass
        return super().render(_nan_to_none(data), accepted_media_type, renderer_context)


def _nan_to_none(value):
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


def time_window(series: Series, start, end) -> tuple[int, int]:
    """[start, end) in µs of a read (REST and GraphQL), refused with 400 outside the store's times."""
    timerange.check_read_window(start, end)
    start, end = timerange.as_utc(start), timerange.as_utc(end)
    if end is None:
        end = (series.last_point_at + timedelta(microseconds=1)) if series.last_point_at else None
    if end is None:
        return 0, 0
    if start is None:
        start = end - DEFAULT_SPAN
    return to_us(start), to_us(end)


def _format_times(ts_us: np.ndarray, time_format: str) -> list:
    if time_format == "epoch_ms":
        return (ts_us // 1000).tolist()
    stamps = np.datetime_as_string(ts_us.astype("datetime64[us]"), unit="ms", timezone="UTC")
    return stamps.tolist()


def _rows(times: list, data: dict[str, np.ndarray], columns: list[str], limit: int) -> list[list]:
    """[[ts, *values], ...] built column-wise in numpy; NaN stays NaN (rendered as null).

    One object array and one tolist(): the rows come out of C, not a Python loop per row (a page
    of 500 one-minute bars: 180 -> 110 us). Casting float64 to object gives Python floats."""
    if not columns or not times:
        return [[t] for t in times]
    rows = np.empty((len(times), len(columns) + 1), dtype=object)
    rows[:, 0] = times
    rows[:, 1:] = np.column_stack([data[c][:limit] for c in columns]).astype(np.float64, copy=False)
    return rows.tolist()


def page(request, series: Series, data: dict[str, np.ndarray], columns: list[str], *, resolution: str,
         start_us: int, end_us: int, limit: int, time_format: str) -> dict:
    """One page of rows plus the link to the next: rows are [ts, *columns]; NaN renders as null."""
    ts = data["ts"][:limit]
    truncated = len(data["ts"]) > limit
    body = {
        "series": series.pk, "resolution": resolution, "start": from_us(start_us).isoformat(),
        "end": from_us(end_us).isoformat(), "columns": ["ts", *columns],
        "points": _rows(_format_times(ts, time_format), data, columns, limit),
        "count": len(ts), "limit": limit, "truncated": truncated, "next": None,
    }
    if truncated:
        # The next page starts right after the last row returned: pages never overlap or skip.
        query = request.query_params.copy()
        query["start"] = from_us(int(ts[-1]) + 1).isoformat()
        query["end"] = from_us(end_us).isoformat()
        body["next"] = request.build_absolute_uri(request.path) + "?" + urlencode(query)
    return body
