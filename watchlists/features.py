"""The market feature table (seed 001), computed point-in-time correct from 1-minute bars or ticks.

Pure pandas/numpy: no Django imports, so the store, the detectors and the evaluation share it.

Input contract of `compute_features(bars)`:
- a DataFrame of bars, one row per bar, sorted by time. The time is either the index (a
  DatetimeIndex) or a `ts` column: datetime64 (tz-aware, converted to UTC; naive means UTC) or
  int64 nanoseconds since the epoch (UTC). A bar's time marks its *start*, as in the data files.
- columns `open, high, low, close, volume` (floats; volume in shares) and optionally
  `trade_count` (number of prints in the bar). Gaps (pre-market minutes without trades) are fine:
  time windows ("5m", "15m") are measured on the clock, so a gap shortens the window's content.

Output: a DataFrame with the same index as the input rows (a UTC DatetimeIndex named `ts`) and
the columns of `FEATURE_COLUMNS`. The row for bar t uses only bars whose start is <= t (it can be
computed as soon as bar t closes); nothing is centred or back-filled, so appending future bars
never changes an existing row. `trade_count_1m` and `avg_trade_size_1m` are NaN without
`trade_count`. The first rows of a series have shorter windows (min_periods = 1), not NaN, except
where a statistic needs two points (volatility: 0.0 until then).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURE_COLUMNS = (
    "vwap_5m",
    "vwap_15m",
    "realized_vol_5m",
    "realized_vol_15m",
    "price_momentum_1m",
    "price_momentum_5m",
    "volume_5m",
    "volume_ratio",
    "trade_count_1m",
    "avg_trade_size_1m",
)
VOLUME_RATIO_PERIODS = 20

__all__ = ["FEATURE_COLUMNS", "bars_from_ticks", "compute_features", "utc_index"]


def utc_index(frame: pd.DataFrame) -> pd.DatetimeIndex:
    """The rows' times as a UTC DatetimeIndex named `ts` (from the index or a `ts` column)."""
    raw = frame["ts"] if "ts" in frame.columns else frame.index
    if pd.api.types.is_integer_dtype(getattr(raw, "dtype", None)):
        idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(raw, dtype="int64"), unit="ns", utc=True))
    elif pd.api.types.is_datetime64_any_dtype(getattr(raw, "dtype", None)):
        idx = pd.DatetimeIndex(pd.to_datetime(raw, utc=True))
    else:  # strings: ISO-8601 with or without fractional seconds and offsets
        idx = pd.DatetimeIndex(pd.to_datetime(raw, utc=True, format="ISO8601"))
    return idx.rename("ts")


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Seed 001's feature table for `bars` (see the module docstring for the contract)."""
    idx = utc_index(bars)
    cols = {c: np.asarray(bars[c], dtype="float64") for c in ("open", "high", "low", "close", "volume")}
    b = pd.DataFrame(cols, index=idx)
    typical = (b["high"] + b["low"] + b["close"]) / 3.0
    logret = np.log(b["close"]).diff()
    out = pd.DataFrame(index=idx)
    pv = typical * b["volume"]
    for minutes in (5, 15):
        window = f"{minutes}min"
        vol_sum = b["volume"].rolling(window, min_periods=1).sum()
        vwap = pv.rolling(window, min_periods=1).sum() / vol_sum
        # A window without volume (halted or empty pre-market) has no VWAP; the close stands in.
        out[f"vwap_{minutes}m"] = vwap.where(vol_sum > 0, b["close"])
        out[f"realized_vol_{minutes}m"] = logret.rolling(window, min_periods=2).std(ddof=0).fillna(0.0)
        if minutes == 5:
            out["volume_5m"] = vol_sum
    out["price_momentum_1m"] = (b["close"] - b["open"]) / b["open"]
    out["price_momentum_5m"] = (b["close"] / b["close"].shift(5) - 1.0).fillna(0.0)
    # The average excludes the current bar so that a surge is measured against what came before.
    prev_avg = b["volume"].shift(1).rolling(VOLUME_RATIO_PERIODS, min_periods=1).mean()
    out["volume_ratio"] = (b["volume"] / prev_avg).where(prev_avg > 0, 1.0).fillna(1.0)
    if "trade_count" in bars.columns:
        tc = pd.Series(np.asarray(bars["trade_count"], dtype="float64"), index=idx)
        out["trade_count_1m"] = tc
        out["avg_trade_size_1m"] = (b["volume"] / tc).where(tc > 0, 0.0)
    else:
        out["trade_count_1m"] = np.nan
        out["avg_trade_size_1m"] = np.nan
    return out[list(FEATURE_COLUMNS)]


def bars_from_ticks(ticks: pd.DataFrame, freq: str = "1min", drop_suspicious: bool = True) -> pd.DataFrame:
    """Aggregate trade prints (`timestamp`/`ts`, `price`, `size`, optional `suspicious`) into bars.

    Bars are labelled by their start and only bars with at least one print are returned, so a
    bar depends only on prints inside it. Prints the vendor flagged `suspicious` are dropped by
    default because one bad print would otherwise become the bar's high or low.
    """
    t = ticks.rename(columns={"timestamp": "ts"})
    if drop_suspicious and "suspicious" in t.columns:
        t = t[t["suspicious"] == 0]
    idx = utc_index(t)
    price = pd.Series(np.asarray(t["price"], dtype="float64"), index=idx)
    size = pd.Series(np.asarray(t["size"], dtype="float64"), index=idx)
    grouped = price.resample(freq, label="left", closed="left")
    bars = pd.DataFrame({
        "open": grouped.first(), "high": grouped.max(), "low": grouped.min(), "close": grouped.last(),
        "volume": size.resample(freq, label="left", closed="left").sum(),
        "trade_count": grouped.count().astype("float64"),
    })
    bars = bars[bars["trade_count"] > 0]
    bars.index.name = "ts"
    return bars
