"""Store times are int64 microseconds since the Unix epoch, UTC, everywhere inside the store."""

from datetime import UTC, datetime, timedelta

import numpy as np

US = 1_000_000
# PostgreSQL's binary timestamptz counts microseconds from 2000-01-01.
PG_EPOCH_OFFSET_US = 946_684_800 * US


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The times the store holds, whatever a setting says: every path (parsing, PostgreSQL, Python's
# datetime, numpy) represents them exactly. Ingest accepts a narrower range (watchlists.timerange).
STORE_MIN = datetime(1700, 1, 1, tzinfo=UTC)
STORE_MAX = datetime(2201, 1, 1, tzinfo=UTC)  # exclusive


def to_us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


def describe_us(us: int) -> str:
    """ISO-8601 for an error message; any int64, even one no datetime can hold."""
    try:
        return from_us(us).isoformat().replace("+00:00", "Z")
    except OverflowError:
        return f"{int(us) // 1000} ms from 1970-01-01"


def floor_us(values: np.ndarray | int, seconds: int):
    step = seconds * US
    return (np.asarray(values) // step) * step
