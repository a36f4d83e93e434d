"""Which clock a series is shown in: market series in their exchange's time (09:30 is the open),
metric series in UTC. The API stays UTC ISO-8601; only pages and emails convert."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

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
