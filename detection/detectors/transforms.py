"""Value transforms shared by the detectors: level, difference, log-return, and split handling.

Why transforms: a price level is non-stationary, so "far from the rolling median" mostly
measures the trend; its log-returns are close to stationary. A machine metric or a count is
usually stationary around a level, and there the level itself is what goes wrong. `choose`
resolves "auto": market series (a calendar, or OHLC bars) with positive values use log-returns;
other series use the level unless it wanders like a random walk, in which case differences.

Splits: an unadjusted 7:1 split is a -84 % "return" at the first bar of the split day. Two
documented, opt-out mechanisms make log-return scoring tolerant:
- `split_factors`: known splits from the store, as [[ISO date, ratio], ...] where ratio is new
  shares per old share (7 for AAPL's 7:1, 0.05 for AIG's 1:20 reverse split). The store gets
  them from Lean factor files: the ratio at a row is split_factor(previous row) / split_factor
  (this row), effective from the next trading day. The first log-return on or after that date
  gets +log(ratio) added back, i.e. it is scored as the split-adjusted return.
- `split_aware` heuristic (market series only): a first-bar-of-session log-return within
  `SPLIT_TOLERANCE` of -log(r) for a common ratio r is treated as an unannounced split and
  replaced by its residual. A genuine -50 % crash lands near the 2:1 ratio and would be muted
  too; that is the price of not calling every split an anomaly, and why factors are preferred.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["SPLIT_RATIOS", "apply_split_factors", "choose", "gap_scale", "neutralize_splits", "run_lengths",
           "session_starts", "transform"]

SPLIT_RATIOS = (1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0, 15.0, 20.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5,
                1 / 8, 1 / 10, 1 / 15, 1 / 20)
SPLIT_TOLERANCE = 0.03  # in log-return units (about 3 %)
# Level-vs-difference test: robust spread of the level around its rolling median relative to
# that of first differences. White noise gives ~0.7, a random walk several times more.
RANDOM_WALK_RATIO = 2.5


def choose(requested: str, values: np.ndarray, is_market: bool, window: int) -> str:
    if requested != "auto":
        return requested
    v = values[np.isfinite(values)]
    if is_market and len(v) and (v > 0).all():
        return "logret"
    if len(v) < 20:
        return "level"
    s = pd.Series(v)
    dev = (s - s.rolling(min(window, len(v) // 2), min_periods=5).median()).abs().median()
    dif = s.diff().abs().median()
    if not np.isfinite(dev) or dif == 0:
        return "level"
    return "diff" if dev / dif > RANDOM_WALK_RATIO else "level"


def transform(values: np.ndarray, kind: str) -> np.ndarray:
    """Level, first difference or log-return; the first element of a difference is NaN."""
    x = np.asarray(values, dtype="float64")
    if kind == "level":
        return x.copy()
    prev = np.concatenate([[np.nan], x[:-1]])
    if kind == "diff":
        return x - prev
    if kind == "logret":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.where(x > 0, x, np.nan)) - np.log(np.where(prev > 0, prev, np.nan))
    raise ValueError(f"unknown transform {kind!r}")


def session_starts(ts: pd.Series, tz: str = "America/New_York") -> np.ndarray:
    """True at the first row of each local calendar day (where an overnight split shows)."""
    day = pd.DatetimeIndex(ts).tz_convert(tz).normalize().asi8
    return np.concatenate([[True], day[1:] != day[:-1]]) if len(day) else np.zeros(0, bool)


def neutralize_splits(logret: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replace split-like first-bar returns by their residual; returns (adjusted, mask)."""
    out = logret.copy()
    logs = -np.log(np.asarray(SPLIT_RATIOS))
    cand = starts & np.isfinite(out) & (np.abs(out) > np.log(1.4))
    mask = np.zeros(len(out), dtype=bool)
    for i in np.flatnonzero(cand):
        k = int(np.argmin(np.abs(logs - out[i])))
        if abs(logs[k] - out[i]) < SPLIT_TOLERANCE:
            out[i] -= logs[k]
            mask[i] = True
    return out, mask


def apply_split_factors(logret: np.ndarray, ts: pd.Series, factors: list) -> np.ndarray:
    """Add back log(ratio) at the first row on or after each known split date."""
    if not factors:
        return logret
    out = logret.copy()
    t = pd.DatetimeIndex(ts).as_unit("ns").asi8
    for date, ratio in factors:
        when = pd.Timestamp(date, tz="America/New_York").tz_convert("UTC").value
        i = int(np.searchsorted(t, when, side="left"))
        # Only when the previous row is before the split date (else the split is not in view).
        if 0 < i < len(out) and t[i - 1] < when:
            out[i] += np.log(float(ratio))
    return out


MAX_GAP_SCALE = 8.0


def gap_scale(ts: pd.Series, step: float) -> np.ndarray:
    """sqrt(time since the previous row / typical step), clipped to [1, MAX_GAP_SCALE].

    A change over a 16-hour overnight gap or a 10-minute hole in thin pre-market trading is
    naturally larger than a one-step change (Brownian scaling: spread grows with the square
    root of time); dividing differences by this scale compares like with like. The cap keeps
    an overnight gap from being diluted to nothing (overnight moves are far smaller than
    sqrt(960 minutes) times a minute's). Row 0 has no predecessor and gets 1."""
    if step <= 0 or len(ts) < 2:
        return np.ones(len(ts))
    t = pd.DatetimeIndex(ts).as_unit("ns").asi8
    gaps = np.concatenate([[step * 1e9], np.diff(t).astype("float64")]) / (step * 1e9)
    return np.clip(np.sqrt(np.maximum(gaps, 0.0)), 1.0, MAX_GAP_SCALE)


def run_lengths(values: np.ndarray, cap: int) -> np.ndarray:
    """Number of immediately preceding rows with exactly the same value (0 = it changed),
    capped at `cap` so that a batch and a stream with a `cap`-row buffer agree."""
    x = np.asarray(values, dtype="float64")
    same = np.concatenate([[False], x[1:] == x[:-1]])
    # Length of the current run of `same`: index minus index of the last False.
    idx = np.arange(len(x))
    last_break = np.maximum.accumulate(np.where(~same, idx, 0))
    return np.minimum(idx - last_break, cap).astype("float64")
