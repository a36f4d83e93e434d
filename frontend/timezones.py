"""Which clock a series is shown in: market series in their exchange's time (09:30 is the open),
metric series in the viewer's own zone (User.time_zone, UTC unless they choose another). The API
stays UTC ISO-8601; only pages and emails convert."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from zoneinfo import ZoneInfo, available_timezones

import pandas as pd

from watchlists import calendars
from watchlists.models import Series
from watchlists.services import series_timezone

# The signed-in viewer's zone for metric series, set around each page (frontend.pages.org_page).
# A context variable rather than Django's active time zone: that one would also shift the API's
# and templates' |date output, which stay UTC.
_viewer_zone: ContextVar[str] = ContextVar("viewer_zone", default="UTC")


def valid_zone(name: str) -> bool:
    return name in available_timezones()


@contextmanager
def viewing_as(user):
    """Pages inside show metric series in `user`'s zone (UTC if unset or no longer a known zone)."""
    name = getattr(user, "time_zone", "") or "UTC"
    token = _viewer_zone.set(name if valid_zone(name) else "UTC")
    try:
        yield
    finally:
        _viewer_zone.reset(token)


def display_zone(series: Series) -> str:
    """The IANA zone a page shows `series` in: its exchange's, else the viewer's."""
    return series_timezone(series) if series.exchange else _viewer_zone.get()


def zone_of(series: Series) -> ZoneInfo:
    return ZoneInfo(display_zone(series))


def local(dt: datetime, series: Series) -> datetime:
    return dt.astimezone(zone_of(series))


def zone_label(series: Series) -> str:
    """Named once per page or email: "exchange time, America/New_York", "UTC" or "your time, Europe/Berlin"."""
    name = display_zone(series)
    if series.exchange:
        return f"exchange time, {name}"
    return "UTC" if name == "UTC" else f"your time, {name}"


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
