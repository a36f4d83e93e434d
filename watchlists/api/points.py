"""The read side of /points/ and /features/: time-paginated, with a stated limit."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import numpy as np

from ..models import Series
from ..store.timeconv import from_us, to_us

DEFAULT_SPAN = timedelta(days=1)


def time_window(series: Series, start, end) -> tuple[int, int]:
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


def page(request, series: Series, data: dict[str, np.ndarray], columns: list[str], *, resolution: str,
         start_us: int, end_us: int, limit: int, time_format: str) -> dict:
    """One page of rows plus the link to the next: rows are [ts, *columns]; NaN becomes null."""
    ts = data["ts"][:limit]
    truncated = len(data["ts"]) > limit
    rows = [_format_times(ts, time_format)]
    for c in columns:
        values = data[c][:limit]
        rows.append([None if v != v else v for v in values.tolist()])
    body = {
        "series": series.pk, "resolution": resolution, "start": from_us(start_us).isoformat(),
        "end": from_us(end_us).isoformat(), "columns": ["ts", *columns], "points": [list(r) for r in zip(*rows, strict=True)],
        "count": len(ts), "limit": limit, "truncated": truncated, "next": None,
    }
    if truncated:
        # The next page starts right after the last row returned: pages never overlap or skip.
        query = request.query_params.copy()
        query["start"] = from_us(int(ts[-1]) + 1).isoformat()
        query["end"] = from_us(end_us).isoformat()
        body["next"] = request.build_absolute_uri(request.path) + "?" + urlencode(query)
    return body
