"""1-minute, 5-minute and 1-hour OHLCV rollups and the feature table, kept up to date.

A batch (including late or out-of-order data) marks the span it touched; every bucket of that
span is recomputed in full, the minutes from the raw points and the coarser buckets from those
minutes, so the rollup of a bucket never depends on the order in which its points arrived. Features
downstream of a changed minute are recomputed too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from django.db import connection, transaction

from watchlists.features import compute_features

from .reader import read_raw, read_rollup
from .schema import FEATURE_COLUMNS, FEATURE_TABLE, ROLLUP_TABLE, partitioned
from .timeconv import US, floor_us

RESOLUTIONS = {"1m": 60, "5m": 300, "1h": 3600}  # finest first: the coarser ones are built from the minutes
# Features look back at most 20 one-minute periods (volume_ratio) and 15 minutes (vwap/vol).
FEATURE_LOOKBACK_US = 25 * 60 * US
FEATURE_HORIZON_US = 25 * 60 * US


def _buckets(ts: np.ndarray, seconds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bucket of each row, first row of each bucket, last row of each bucket) of ts-sorted rows."""
    buckets = floor_us(ts, seconds)
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    return buckets, starts, np.r_[starts[1:], len(buckets)] - 1


def _aggregate(kind: str, raw: dict[str, np.ndarray], seconds: int) -> dict[str, np.ndarray]:
    """OHLCV per bucket with numpy reductions over the (ts-sorted) raw rows."""
    buckets, starts, ends = _buckets(raw["ts"], seconds)
    if kind == "trade":
        price, size = raw["price"], raw["size"]
        o, h, low, c, v = price, price, price, price, size
        counts = np.diff(np.r_[starts, len(buckets)]).astype(np.float64)
        pv = np.add.reduceat(price * size, starts)
    elif kind == "bar":
        o, h, low, c, v = raw["open"], raw["high"], raw["low"], raw["close"], raw["volume"]
        counts = np.full(len(starts), np.nan)
        pv = np.add.reduceat(raw["close"] * raw["volume"], starts)
    else:
        o = h = low = c = raw["value"]
        v = None
        counts = np.diff(np.r_[starts, len(buckets)]).astype(np.float64)
        pv = None
    volume = np.add.reduceat(v, starts) if v is not None else np.full(len(starts), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = pv / volume if pv is not None else np.full(len(starts), np.nan)
    return {"ts": buckets[starts], "open": o[starts], "high": np.maximum.reduceat(h, starts),
            "low": np.minimum.reduceat(low, starts), "close": c[ends], "volume": volume,
            "trade_count": counts, "vwap": np.where(np.isfinite(vwap), vwap, np.nan)}


def _combine(minutes: dict[str, np.ndarray], seconds: int) -> dict[str, np.ndarray]:
    """Coarser OHLCV buckets from 1-minute rows: what _aggregate gives from the raw points (volume
    and trade counts add up, the VWAP is the volume-weighted mean of the minutes' VWAPs)."""
    if not len(minutes["ts"]):
        return {"ts": np.empty(0, np.int64)}
    buckets, starts, ends = _buckets(minutes["ts"], seconds)
    volume = minutes["volume"]
    # A minute without volume has no VWAP and adds nothing to the price x size sum.
    pv = np.where(np.isfinite(minutes["vwap"]), minutes["vwap"] * volume, 0.0)
    total = np.add.reduceat(volume, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.add.reduceat(pv, starts) / total
    return {"ts": buckets[starts], "open": minutes["open"][starts], "high": np.maximum.reduceat(minutes["high"], starts),
            "low": np.minimum.reduceat(minutes["low"], starts), "close": minutes["close"][ends], "volume": total,
            "trade_count": np.add.reduceat(minutes["trade_count"], starts),
            "vwap": np.where(np.isfinite(vwap), vwap, np.nan)}


def _replace_rows(table: str, organization_id: int, series_id: int, start_us: int, end_us: int,
                  columns: list[str], data: dict[str, np.ndarray], extra: dict | None = None) -> None:
    """Deletes the range and inserts the recomputed rows (one transaction, so readers never see a hole)."""
    from .reader import store_time

    extra = extra or {}
    where = "series_id = %s AND ts >= %s AND ts < %s" + "".join(f" AND {k} = %s" for k in extra)
    n = len(data["ts"])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE {where}",
                       [series_id, store_time(start_us), store_time(end_us), *extra.values()])
        if not n:
            return
        names = ["organization_id", "series_id", "ts", *extra, *columns]
        ts = data["ts"]
        if partitioned():
            # One statement over arrays instead of one INSERT per row (NaN -> NULL in SQL).
            cells = ", ".join(["%s", "%s", "u.ts"] + ["%s"] * len(extra)
                              + [f"NULLIF(u.c{i}, 'NaN')" for i in range(len(columns))])
            arrays = ", ".join(["%s::timestamptz[]"] + ["%s::float8[]"] * len(columns))
            aliases = ", ".join(["ts"] + [f"c{i}" for i in range(len(columns))])
            cursor.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {cells} FROM unnest({arrays}) AS u({aliases})",
                           [organization_id, series_id, *extra.values(), [store_time(t) for t in ts.tolist()],
                            *(data[c].astype(np.float64).tolist() for c in columns)])
            return
        ts = ts.tolist()
        values = [[None if (isinstance(x, float) and np.isnan(x)) else x for x in data[c].tolist()] for c in columns]
        rows = [(organization_id, series_id, t, *extra.values(), *vals) for t, *vals in zip(ts, *values, strict=True)]
        marks = ", ".join("%s" for _ in names)
        cursor.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)


def refresh_rollups(series, start_us: int, end_us: int) -> None:
    """Recomputes every rollup bucket and feature row that [start_us, end_us] can affect.

    Ticks and metrics: the minutes touched from the raw points, then the 5-minute and hourly
    buckets touched from those minutes (just written, in RESOLUTIONS order). Reading the whole hour
    of raw points instead made each refresh cost what the hour held so far: at 1,000 ticks/s, a
    refresh late in the hour re-read millions of rows. Bars are few per bucket and keep their own
    aggregation (close x volume VWAP, no trade count) from the raw bars."""
    for seconds in RESOLUTIONS.values():
        if series.kind == "bar" and series.bar_seconds and seconds <= series.bar_seconds:
            continue  # a rollup no coarser than the bars themselves is just the bars
        lo = int(floor_us(start_us, seconds))
        hi = int(floor_us(end_us, seconds)) + seconds * US
        if seconds == 60 or series.kind == "bar":
            raw = read_raw(series.pk, series.kind, lo, hi)
            agg = _aggregate(series.kind, raw, seconds) if len(raw["ts"]) else {"ts": np.empty(0, np.int64)}
        else:
            agg = _combine(read_rollup(series.pk, 60, lo, hi), seconds)
        _replace_rows(ROLLUP_TABLE, series.organization_id, series.pk, lo, hi,
                      ["open", "high", "low", "close", "volume", "trade_count", "vwap"], agg,
                      {"resolution": seconds})
    if series.kind != "metric":
        refresh_features(series, start_us, end_us)


def minute_bars(series, start_us: int, end_us: int) -> pd.DataFrame:
    """1-minute bars of a series: the rollup, or the raw bars when they are 1-minute bars."""
    if series.kind == "bar" and series.bar_seconds == 60:
        data = read_raw(series.pk, "bar", start_us, end_us)
        data["trade_count"] = np.full(len(data["ts"]), np.nan)
    else:
        data = read_rollup(series.pk, 60, start_us, end_us)
    frame = pd.DataFrame({k: v for k, v in data.items() if k != "vwap"})
    if frame["trade_count"].isna().all():
        frame = frame.drop(columns=["trade_count"])
    frame["ts"] = frame["ts"].astype("int64") * 1000  # µs -> ns for the features module
    return frame


def refresh_features(series, start_us: int, end_us: int) -> None:
    if series.kind == "bar" and series.bar_seconds not in (None, 60):
        return  # the feature table is defined on 1-minute bars
    lo = int(floor_us(start_us, 60))
    hi = int(floor_us(end_us, 60)) + FEATURE_HORIZON_US
    bars = minute_bars(series, lo - FEATURE_LOOKBACK_US, hi)
    if bars.empty:
        return
    features = compute_features(bars)
    ts_us = bars["ts"].to_numpy() // 1000
    keep = (ts_us >= lo) & (ts_us < hi)
    data = {"ts": ts_us[keep]}
    for column in FEATURE_COLUMNS:
        data[column] = features[column].to_numpy(dtype=np.float64)[keep]
    _replace_rows(FEATURE_TABLE, series.organization_id, series.pk, lo, hi, list(FEATURE_COLUMNS), data)
