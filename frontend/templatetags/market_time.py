"""{{ anomaly.ts|market_time:anomaly.series }}: the time on the series' own clock (see timezones)."""

from django import template

from ..timezones import local

register = template.Library()


@register.filter
def market_time(value, series, fmt="%Y-%m-%d %H:%M:%S"):
    if value is None:
        return ""
    return local(value, series).strftime(fmt)


@register.filter
def market_clock(value, series):
    """The time of day only (HH:MM:SS), for tables inside one session."""
    return market_time(value, series, "%H:%M:%S")
