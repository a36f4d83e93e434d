"""Scale-free feature vectors for the learned detectors, all from trailing windows (causal).

Two groups:
- value features (every series): the transformed step (log-return or difference, scaled by its
  training spread), its size relative to the recent typical size, short/long volatility ratio
  (volatility bursts), distance of the level from its rolling median in rolling-MAD units
  (spikes and level shifts), and the stuck-run length.
- market features (OHLCV bars): seed 001's table from `watchlists.features`, or the store's
  persisted copy when the input frame already carries those columns. Price-level columns are
  made scale-free (close relative to VWAP, log volumes) because a forest trained on last
  month's price level would call any new level an anomaly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from watchlists.features import FEATURE_COLUMNS, compute_features

from . import transforms

__all__ = ["LONGEST_WINDOW", "market_features", "value_features"]

SHORT, LONG = 10, 60
LONGEST_WINDOW = 2 * LONG  # nested windows (a ratio of rolling statistics) need twice the span
_EPS = 1e-12


def _rolling(s: pd.Series, window: int, how: str) -> pd.Series:
    return getattr(s.rolling(window, min_periods=3), how)()


def value_features(values: np.ndarray, kind: str, step_scale: float) -> pd.DataFrame:
    """Value-only features; `kind` is the transform, `step_scale` its training spread."""
    x = pd.Series(np.asarray(values, dtype="float64"))
    step = pd.Series(transforms.transform(x.to_numpy(), "diff" if kind == "level" else kind))
    step = step / max(step_scale, _EPS)
    size = step.abs()
    typical = _rolling(size.shift(1), LONG, "median")
    vol_s, vol_l = _rolling(step, SHORT, "std"), _rolling(step.shift(SHORT), LONG, "std")
    med = _rolling(x.shift(1), LONG, "median")
    mad = _rolling((x - med).abs().shift(1), LONG, "median")
    out = pd.DataFrame({
        "step": step.clip(-50, 50),
        "step_size_ratio": np.log((size + 1e-3) / (typical + 1e-3)),
        "vol_ratio": np.log((vol_s + 1e-3) / (vol_l + 1e-3)),
        "level_dev": ((x - med) / (mad + _EPS)).clip(-50, 50) if kind == "level" else 0.0,
        "stuck_run": np.log1p(transforms.run_lengths(x.to_numpy(), cap=LONG)),
    })
    return out.fillna(0.0)


def market_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Scale-free transforms of seed 001's features (computed here unless already present)."""
    if set(FEATURE_COLUMNS) <= set(frame.columns):
        f = frame[list(FEATURE_COLUMNS)].reset_index(drop=True)
    else:
        f = compute_features(frame).reset_index(drop=True)
    close = frame["value"].to_numpy()
    out = pd.DataFrame({
        "close_vs_vwap_5m": np.log(close / f["vwap_5m"].to_numpy()),
        "close_vs_vwap_15m": np.log(close / f["vwap_15m"].to_numpy()),
        "realized_vol_5m": f["realized_vol_5m"].to_numpy(),
        "realized_vol_15m": f["realized_vol_15m"].to_numpy(),
        "price_momentum_1m": f["price_momentum_1m"].to_numpy(),
        "price_momentum_5m": f["price_momentum_5m"].to_numpy(),
        "log_volume_5m": np.log1p(f["volume_5m"].to_numpy()),
        "log_volume_ratio": np.log(np.maximum(f["volume_ratio"].to_numpy(), 0) + 1e-3),
    })
    if f["trade_count_1m"].notna().any():
        out["log_trade_count_1m"] = np.log1p(f["trade_count_1m"].to_numpy())
        out["log_avg_trade_size_1m"] = np.log1p(f["avg_trade_size_1m"].to_numpy())
    return out.replace([np.inf, -np.inf], np.nan).fillna(0.0)
