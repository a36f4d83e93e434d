"""Trading sessions through exchange_calendars: "was the market open at t", "minute of session",
"how many bars should this day have". Series without an exchange have no calendar."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

import numpy as np
import pandas as pd


class UnknownExchange(ValueError):
    pass


@lru_cache(maxsize=16)
def get_calendar(code: str):
    import exchange_calendars as xcals  # loading calendars is slow; only market code pays for it

    try:
        return xcals.get_calendar(code)
    except xcals.errors.InvalidCalendarName:
        raise UnknownExchange(f"Unknown exchange calendar '{code}'; use a code such as XNYS, XNAS or XLON.") from None


def valid_exchange(code: str) -> bool:
    import exchange_calendars as xcals

    return code in xcals.get_calendar_names(include_aliases=True)


def timezone_of(code: str) -> str:
    return str(get_calendar(code).tz) if code else "UTC"


def is_open(code: str, ts: datetime) -> bool:
    return bool(get_calendar(code).is_open_on_minute(pd.Timestamp(ts).tz_convert("UTC").floor("min")))


def in_session(code: str, ts_us: np.ndarray) -> np.ndarray:
    """For epoch-microsecond times: True where the minute lies in one of the exchange's regular
    sessions (not pre-market, after-hours, weekends or holidays)."""
    if not len(ts_us):
        return np.zeros(0, dtype=bool)
    cal = get_calendar(code)
    minutes = pd.DatetimeIndex(ts_us.astype("datetime64[us]"), tz="UTC").floor("min")
    first, last = max(minutes.min(), cal.first_minute), min(minutes.max(), cal.last_minute)
    if first > last:
        return np.zeros(len(ts_us), dtype=bool)
    return np.asarray(minutes.isin(cal.minutes_in_range(first, last)))


def minute_of_session(code: str, ts: datetime) -> int | None:
    """Minutes since the session's open (0 = the opening minute), or None outside a session."""
    cal = get_calendar(code)
    minute = pd.Timestamp(ts).tz_convert("UTC").floor("min")
    if not cal.is_open_on_minute(minute):
        return None
    session = cal.minute_to_session(minute)
    return int((minute - cal.session_open(session)).total_seconds() // 60)


def expected_bars(code: str, day: date, bar_seconds: int = 60) -> int:
    """Regular-session bars expected on `day` (0 on holidays; fewer on half days)."""
    cal = get_calendar(code)
    session = pd.Timestamp(day)
    if not cal.is_session(session):
        return 0
    seconds = (cal.session_close(session) - cal.session_open(session)).total_seconds()
    return int(seconds // bar_seconds)
