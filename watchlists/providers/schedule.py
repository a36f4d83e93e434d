"""When the scheduled jobs have work: exchange sessions (exchange_calendars), not wall-clock days.

Beat fires the jobs on a fixed UTC cron; these functions decide what is due, so a run on a
weekend or an NYSE holiday finds nothing new, a late run catches up, and a second run finds its
work already done.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from ..calendars import get_calendar
from ..store.timeconv import US

# Providers publish the day's last bars a little after the close.
SETTLE = timedelta(minutes=30)
MAX_CATCH_UP = 5


def sessions_between(exchange: str, start: date, end: date) -> list[date]:
    if end < start:
        return []
    cal = get_calendar(exchange)
    first = max(pd.Timestamp(start), cal.first_session)
    last = min(pd.Timestamp(end), cal.last_session)
    if last < first:
        return []
    return [s.date() for s in cal.sessions_in_range(first, last)]


def last_closed_session(exchange: str, now: datetime, settle: timedelta = SETTLE) -> date | None:
    """The latest session whose close (+ settle) is before `now`."""
    cal = get_calendar(exchange)
    now_ts = pd.Timestamp(now).tz_convert("UTC")
    for session in reversed(sessions_between(exchange, (now_ts - pd.Timedelta(days=14)).date(), now_ts.date())):
        if cal.session_close(pd.Timestamp(session)) + settle <= now_ts:
            return session
    return None


def due_sessions(exchange: str, now: datetime, last_done: date | None, max_catch_up: int = MAX_CATCH_UP) -> list[date]:
    """Closed sessions after `last_done`, oldest first, at most `max_catch_up` of the latest."""
    latest = last_closed_session(exchange, now)
    if latest is None or (last_done is not None and last_done >= latest):
        return []
    start = last_done + timedelta(days=1) if last_done else latest
    return sessions_between(exchange, start, latest)[-max_catch_up:]


def recent_sessions(exchange: str, now: datetime, count: int) -> list[date]:
    latest = last_closed_session(exchange, now)
    if latest is None:
        return []
    return sessions_between(exchange, latest - timedelta(days=count * 2 + 10), latest)[-count:]


def session_bounds_us(exchange: str, session: date) -> tuple[int, int]:
    cal = get_calendar(exchange)
    ts = pd.Timestamp(session)
    return int(cal.session_open(ts).value // 1000), int(cal.session_close(ts).value // 1000)


def expected_bar_times(exchange: str, session: date, bar_seconds: int) -> np.ndarray:
    """Start times (µs UTC) of the regular-session bars of a session; half days have fewer."""
    open_us, close_us = session_bounds_us(exchange, session)
    return np.arange(open_us, close_us, bar_seconds * US, dtype=np.int64)
