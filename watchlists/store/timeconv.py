"""Store times are int64 microseconds since the Unix epoch, UTC, everywhere inside the store."""

from datetime import UTC, datetime, timedelta

import numpy as np

US = 1_000_000
# PostgreSQL's binary timestamptz counts microseconds from 2000-01-01.
PG_EPOCH_OFFSET_US = 946_684_800 * US


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))


def floor_us(values: np.ndarray | int, seconds: int):
    step = seconds * US
    return (np.asarray(values) // step) * step
