"""Which clock a series is shown in: market series in their exchange's time (09:30 is the open),
metric series in UTC. The API stays UTC ISO-8601; only pages and emails convert."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd

from watchlists import calendars
from watchlists.models import Series
from watchlists.services import series_timezone


def zone_of(series: Series) -> ZoneInfo:
    return ZoneInfo(series_timezone(series))


def local(dt: datetime, series: Series) -> datetime:
    return dt.astimezone(zone_of(series))


def zone_label(series: Series) -> str:
    """Named once per page or email: "exchange time, America/New_York" or "UTC"."""
    name = series_timezone(series)
    return "UTC" if name == "UTC" else f"exchange time, {name}"


def offset_seconds(series: Series, dt: datetime) -> int:
    """The zone's UTC offset at dt: charts draw exchange time by shifting their epoch seconds."""
    offset = local(dt, series).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def regular_hours(series: Series) -> str | None:
    """The exchange's regular session in its own time, "09:30–16:00 America/New_York", from its
    calendar (the longest of the last sessions, so a half day does not stand for the rule); None
    for series without an exchange."""
    if not series.exchange:
        return None
    cal = calendars.get_calendar(series.exchange)
    end = pd.Timestamp(min(cal.last_session, pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()))
    sessions = cal.sessions_in_range(end - pd.Timedelta(days=14), end)
    if not len(sessions):
        return None
    longest = max(sessions, key=lambda s: cal.session_close(s) - cal.session_open(s))
    zone = series_timezone(series)
    opens, closes = cal.session_open(longest).tz_convert(zone), cal.session_close(longest).tz_convert(zone)
    return f"{opens:%H:%M}–{closes:%H:%M} {zone}"
