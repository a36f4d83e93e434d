"""Which times a series accepts, checked before anything is written.

A point's time decides which partition it lands in (ticks monthly, bars and metrics yearly), and
a partition is DDL: two ticks a century apart once created 1,189 partitions in one request. So a
batch is refused, with its rows and the accepted range, when it holds a time

- before the series' `history_from`, or INGEST_EARLIEST when the series has none (1970-01-01), or
- more than INGEST_MAX_FUTURE_SECONDS ahead of now (a day), or
- outside what the store holds at all (timeconv.STORE_MIN .. STORE_MAX),

and when it would still need more than INGEST_MAX_NEW_PARTITIONS partitions that do not exist yet
(older history goes in a few batches, each covering a shorter span).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from django.conf import settings

from anomalyhub.lib.errors import InvalidError

from .ingest import MAX_ERRORS_LISTED, BatchInvalid
from .store.timeconv import STORE_MAX, STORE_MIN, describe_us, to_us
from .store.writer import Points


def earliest_default() -> datetime:
    return getattr(settings, "INGEST_EARLIEST", datetime(1970, 1, 1, tzinfo=UTC))


def accepted_range(series) -> tuple[datetime, datetime]:
    """[first, last] times a batch for `series` may hold, now."""
    earliest = max(series.history_from or earliest_default(), STORE_MIN)
    ahead = timedelta(seconds=getattr(settings, "INGEST_MAX_FUTURE_SECONDS", 86_400))
    latest = min(datetime.now(UTC) + ahead, STORE_MAX - timedelta(microseconds=1))
    return earliest, latest


def check_times(series, points: Points) -> None:
    """Raises BatchInvalid listing the rows outside accepted_range(series)."""
    if not len(points):
        return
    first, last = accepted_range(series)
    lo, hi = to_us(first), to_us(last)
    outside = (points.ts < lo) | (points.ts > hi)
    if not outside.any():
        return
    rows = points.rows if points.rows is not None else np.arange(1, len(points.ts) + 1)
    where = np.flatnonzero(outside)
    where = where[np.argsort(rows[where], kind="stable")][:MAX_ERRORS_LISTED]
    accepted = f"{_iso(first)} .. {_iso(last)}"
    hint = ("; older history needs the series' history_from set (not before "
            f"{_iso(STORE_MIN)})" if points.ts[outside].min() < lo else "")
    errors = [{"row": int(rows[i]), "column": "ts",
               "reason": f"time {describe_us(int(points.ts[i]))} is outside the accepted range {accepted}{hint}"}
              for i in where]
    raise BatchInvalid(f"{int(outside.sum())} point(s) of {series.symbol} are outside the accepted times "
                       f"{accepted}; nothing was stored.",
                       details={"errors": errors, "total_errors": int(outside.sum()), "symbol": series.symbol,
                                "accepted": {"from": _iso(first), "to": _iso(last)}}, code="time_out_of_range")


def check_history_from(value: datetime | None) -> datetime | None:
    """A series' history_from, aware (naive = UTC), if it lies within what the store holds."""
    value = as_utc(value)
    if value is not None and not STORE_MIN <= value < STORE_MAX:
        raise InvalidError("history_from is outside the times the store holds.",
                           details={"history_from": [f"Between {_iso(STORE_MIN)} and {_iso(STORE_MAX)}."]})
    return value


def as_utc(value: datetime | None) -> datetime | None:
    """Times without an offset are UTC (GraphQL's DateTime may carry none)."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def check_read_window(start: datetime | None, end: datetime | None) -> None:
    """Reads (REST /points/, /features/ and GraphQL) name times the store can hold."""
    problems = {name: [f"Between {_iso(STORE_MIN)} and {_iso(STORE_MAX)} (times the store holds)."]
                for name, value in (("start", as_utc(start)), ("end", as_utc(end)))
                if value is not None and not STORE_MIN <= value <= STORE_MAX}
    if problems:
        raise InvalidError("The time range is outside the times the store holds; see details.", details=problems)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
