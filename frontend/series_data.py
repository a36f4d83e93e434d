"""What the pages show about a series: last price, the latest day of 1-minute closes, anomalies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from detection.models import Anomaly
from detection.services.explain import explain
from watchlists import calendars
from watchlists.models import Series
from watchlists.services import read_points
from watchlists.store.timeconv import to_us

from .timezones import display_zone

RESOLUTIONS = ("1m", "5m", "1h")
BAR_SECONDS = {"1m": 60, "5m": 300, "1h": 3600}
RANGES = {"1d": 1, "5d": 5, "30d": 30, "1y": 365}
MAX_BARS = 5000


@dataclass
class SeriesView:
    series: Series
    times_us: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    closes: np.ndarray = field(default_factory=lambda: np.empty(0))
    ohlc: dict = field(default_factory=dict)
    anomalies: list = field(default_factory=list)
    resolution: str = "1m"

    @property
    def last(self) -> float | None:
        return float(self.closes[-1]) if len(self.closes) else None

    @property
    def change_pct(self) -> float | None:
        if len(self.closes) < 2 or not self.closes[0]:
            return None
        return float((self.closes[-1] / self.closes[0] - 1) * 100)


def latest_day(series: Series, max_anomalies: int = 200, resolution: str = "1m", days: int = 1) -> SeriesView:
    """The last `days` of data of the series as bars of `resolution` (1m, 5m or 1h). A range too
    long for the resolution gets the next coarser one, so the chart always ends at the latest bar."""
    resolution = resolution if resolution in RESOLUTIONS else "1m"
    while days * 86400 / BAR_SECONDS[resolution] > MAX_BARS and resolution != RESOLUTIONS[-1]:
        resolution = RESOLUTIONS[RESOLUTIONS.index(resolution) + 1]
    view = SeriesView(series, resolution=resolution)
    if series.last_point_at is None:
        return view
    end = series.last_point_at + timedelta(microseconds=1)
    start = end - timedelta(days=days)
    if days * 86400 / BAR_SECONDS[resolution] > MAX_BARS:  # still too many at 1h: the newest MAX_BARS hours
        start = end - timedelta(seconds=MAX_BARS * BAR_SECONDS[resolution])
    return _filled(view, start, end, max_anomalies)


def _filled(view: SeriesView, start: datetime, end: datetime, max_anomalies: int) -> SeriesView:
    """The view with the bars and anomalies of [start, end)."""
    series = view.series
    data, columns = read_points(series, view.resolution, to_us(start), to_us(end), MAX_BARS)
    column = "close" if "close" in columns else "value"
    view.times_us, view.closes = data["ts"][:MAX_BARS], data[column][:MAX_BARS]
    if {"open", "high", "low", "close"} <= set(columns):
        view.ohlc = {c: data[c][:MAX_BARS] for c in ("open", "high", "low", "close")}
    view.anomalies = list(Anomaly.objects.filter(series=series, ts__gte=start, ts__lt=end)
                          .select_related("series", "rule", "detector").order_by("-ts")[:max_anomalies])
    return view


WINDOW_BARS = 120  # bars either side of an anomaly on its page


def window_chart(anomaly: Anomaly) -> dict:
    """The chart around one anomaly: WINDOW_BARS bars either side (at least two hours), the
    anomalies among them, the anomaly to focus on and, for detectors, the expected band there."""
    series = anomaly.series
    span = timedelta(seconds=max((series.bar_seconds or 60) * WINDOW_BARS, 7200))
    view = _filled(SeriesView(series), anomaly.ts - span, anomaly.ts + span, 200)
    if anomaly.pk not in {a.pk for a in view.anomalies}:
        view.anomalies.append(anomaly)
    chart = chart_data(view)
    chart["focus"] = anomaly.pk
    expected = anomaly.expected or {}
    if expected.get("lower") is not None and expected.get("upper") is not None:
        chart["band"] = {"lower": expected["lower"], "upper": expected["upper"], "value": expected.get("value")}
    return chart


def on_clock(series: Series, seconds: np.ndarray) -> list[int]:
    """Epoch seconds shifted to the series' clock (exchange time for market series): the chart
    library draws every time as if it were UTC."""
    if not len(seconds):
        return []
    zone = display_zone(series)
    if zone == "UTC":
        return seconds.astype(np.int64).tolist()
    stamps = pd.to_datetime(seconds, unit="s", utc=True).tz_convert(zone).tz_localize(None)
    return stamps.as_unit("s").asi8.tolist()


def session_flags(series: Series, times_us: np.ndarray, bar_seconds: int) -> list[int] | None:
    """1 where a bar touches the exchange's regular session, 0 for extended hours (pre-market,
    after-hours: only uploads store those, providers keep the regular session) and closed days.
    None for series without an exchange: they have no session."""
    if not series.exchange or not len(times_us):
        return None
    last_minute = times_us + max(bar_seconds - 60, 0) * 1_000_000
    flags = calendars.in_session(series.exchange, times_us) | calendars.in_session(series.exchange, last_minute)
    return flags.astype(int).tolist()


def chart_data(view: SeriesView) -> dict:
    """What the chart script draws: bars (seconds on the series' clock, OHLC) and anomaly markers."""
    def clean(values):
        return [None if v != v else round(v, 6) for v in values.tolist()]

    seconds = on_clock(view.series, view.times_us // 1_000_000)
    bars = ({"time": seconds, **{k: clean(v) for k, v in view.ohlc.items()}} if view.ohlc
            else {"time": seconds, "close": clean(view.closes)})
    session = session_flags(view.series, view.times_us, BAR_SECONDS.get(view.resolution, 60))
    if session is not None:
        bars["session"] = session
    marks = on_clock(view.series, np.array([int(a.ts.timestamp()) for a in view.anomalies], dtype=np.int64))
    return {"series": view.series.pk, "kind": view.series.kind, "resolution": view.resolution, "bars": bars,
            "tz": display_zone(view.series), "shifted": True,
            "anomalies": [{"time": t, "id": a.pk, "text": a.text, "severity": a.severity, "score": a.score,
                           "source": a.source, "explanation": explain(a)} for t, a in zip(marks, view.anomalies,
                                                                                          strict=True)]}
