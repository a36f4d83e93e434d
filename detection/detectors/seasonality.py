"""Seasonal buckets and robust seasonal profiles.

Market series (an exchange calendar such as "XNYS") are bucketed by *minute of the trading
session* taken from exchange_calendars, so that DST, half days and holidays are right: the
opening and closing minutes get buckets of their own (the auction minutes behave nothing like
midday), the second half of a session is measured from its actual close (a 13:00 half-day close
is a close), and pre-market, post-market and off-session bars get their own buckets. The first bar of each local day has a bucket
of its own because it carries the overnight gap. Other
intraday series are bucketed by UTC hour of day; daily or coarser series get no seasonality.

A bar is placed by its midpoint (start + step / 2) because bar times mark the start: the hourly
"09:00" bar covers 09:30-10:00 and belongs to the opening bucket.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

__all__ = ["DAY_SECONDS", "SeasonalProfile", "bucket_ids", "choose_mode", "infer_step_seconds"]

DAY_SECONDS = 86_400
# Minutes from the open (first half of a session) or to the close (second half).
_EDGES = np.array([0, 1, 2, 3, 5, 10, 15, 30, 60, 120], dtype="float64")
_N_SESSION = 2 * len(_EDGES)
_PRE_POST_EDGES = np.array([0, 30, 60, 120], dtype="float64")
_PRE = _N_SESSION
_POST = _PRE + len(_PRE_POST_EDGES)
_OFF = _POST + len(_PRE_POST_EDGES)
_FIRST = _OFF + 1  # the first bar of a local day carries the overnight gap
MARKET_BUCKETS = _FIRST + 1


@functools.lru_cache(maxsize=4)
def _calendar(name: str):
    import exchange_calendars as xcals  # imported lazily: calendar construction takes ~0.2 s

    return xcals.get_calendar(name, start="1990-01-01", end="2035-12-31")


def infer_step_seconds(ts: pd.Series | np.ndarray) -> float:
    """The typical sampling step (median positive gap), in seconds; 0 for fewer than 2 rows."""
    ns = np.asarray(pd.DatetimeIndex(ts).as_unit("ns").asi8)
    gaps = np.diff(ns)
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) / 1e9 if len(gaps) else 0.0


def choose_mode(requested: str, calendar: str | None, step: float, span_seconds: float) -> str:
    """Resolve "auto" to "market", "time_of_day" or "none" (see the module docstring)."""
    if requested != "auto":
        return requested
    if step <= 0 or step >= DAY_SECONDS:
        return "none"
    if calendar:
        return "market"
    # Hour-of-day buckets need a few days of history to mean anything.
    return "time_of_day" if span_seconds >= 3 * DAY_SECONDS else "none"


def bucket_ids(ts: pd.Series, mode: str, step: float, calendar: str | None = None) -> np.ndarray:
    """Integer bucket per timestamp (0 for every row when mode is "none")."""
    idx = pd.DatetimeIndex(ts).as_unit("ns")
    if mode == "none" or len(idx) == 0:
        return np.zeros(len(idx), dtype="int64")
    mid = idx + pd.Timedelta(seconds=min(step, 3600.0) / 2.0)
    if mode == "time_of_day":
        return ((mid.hour * 60 + mid.minute) // 60).to_numpy().astype("int64")
    if mode != "market":
        raise ValueError(f"unknown seasonality mode {mode!r}")
    return _market_buckets(mid, calendar or "XNYS")


def _market_buckets(mid: pd.DatetimeIndex, calendar: str) -> np.ndarray:
    cal = _calendar(calendar)
    local_day = mid.tz_convert(cal.tz).normalize().tz_localize(None)
    sched = cal.schedule.reindex(local_day)
    is_session = sched["open"].notna().to_numpy()
    out = np.full(len(mid), _OFF, dtype="int64")
    if not is_session.any():
        return out
    t = mid.asi8.astype("float64")
    opens = pd.DatetimeIndex(sched["open"]).as_unit("ns").asi8.astype("float64")
    closes = pd.DatetimeIndex(sched["close"]).as_unit("ns").asi8.astype("float64")
    from_open = (t - opens) / 60e9
    to_close = (closes - t) / 60e9
    half = (closes - opens) / 120e9
    inside = is_session & (from_open >= 0) & (to_close > 0)
    first_half = inside & (from_open < half)
    second_half = inside & ~first_half
    out[first_half] = np.searchsorted(_EDGES, from_open[first_half], side="right") - 1
    out[second_half] = len(_EDGES) + np.searchsorted(_EDGES, to_close[second_half], side="left") - 1
    pre = is_session & (from_open < 0)
    post = is_session & (to_close <= 0)
    out[pre] = _PRE + np.searchsorted(_PRE_POST_EDGES, -from_open[pre], side="right") - 1
    out[post] = _POST + np.searchsorted(_PRE_POST_EDGES, -to_close[post], side="right") - 1
    # Row 0 of a streaming window is always "first"; it only seeds windows that are then
    # discarded (see the detectors' `context`), so batch and stream still agree.
    day = local_day.asi8
    first = np.concatenate([[True], day[1:] != day[:-1]])
    out[first] = _FIRST
    return out


class SeasonalProfile:
    """Per-bucket location offset and scale ratio of a residual series, shrunk towards
    (0, 1) for buckets with few samples (weight n / (n + shrink)) so that a bucket seen twice
    cannot invent a pattern."""

    def __init__(self, loc: np.ndarray | None = None, scale: np.ndarray | None = None) -> None:
        self.loc = np.zeros(1) if loc is None else np.asarray(loc, dtype="float64")
        self.scale = np.ones(1) if scale is None else np.asarray(scale, dtype="float64")

    @classmethod
    def fit(cls, buckets: np.ndarray, resid: np.ndarray, n_buckets: int, shrink: float = 3.0,
            with_location: bool = True) -> SeasonalProfile:
        ok = np.isfinite(resid)
        b, r = buckets[ok], resid[ok]
        loc, scale = np.zeros(n_buckets), np.ones(n_buckets)
        if len(r) < 10:
            return cls(loc, scale)
        overall_loc = float(np.median(r)) if with_location else 0.0
        # Mean absolute deviations, not medians: in thin pre-market minutes most steps are 0
        # ticks, and a median would call the bucket calm exactly where it is wildest.
        overall = float(np.mean(np.abs(r - overall_loc))) or 1e-12
        for k in np.unique(b):
            rk = r[b == k]
            w = len(rk) / (len(rk) + shrink)
            lk = float(np.median(rk)) if with_location else 0.0
            loc[k] = w * lk
            ratio = float(np.mean(np.abs(rk - lk))) / overall
            scale[k] = float(np.clip(w * ratio + (1 - w), 0.1, 20.0))
        return cls(loc, scale)

    def take(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = np.clip(buckets, 0, len(self.loc) - 1)
        return self.loc[b], self.scale[b]
