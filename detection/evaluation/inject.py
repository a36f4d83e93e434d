"""Injecting labelled anomalies into real bars, with a fixed seed.

Kinds and how they are made (sizes relative to the local volatility sigma of the log-returns
over the previous 100 bars, the larger of the MAD and mean-absolute-deviation estimates, so they are equally hard on quiet and busy series):
- spike: one bar's close jumps by 8-12 sigma and comes straight back.       label: that bar
- level_shift: from one bar on, every price is scaled by exp(+-8-12 sigma).  label: that bar
- volatility_burst: 30 bars whose returns are amplified 5x (prices are rebuilt from the
  amplified returns and the rest of the series is shifted to stay continuous).  label: the 30
- volume_surge: 3 bars at the local median volume times exp(6-9 sigma of log volume),
  at least 10x (minute volume is far noisier than hourly volume).          label: the 3
- stuck: the close frozen at its previous value for 25 bars (a stale feed).  label: the 25
Anomalies go only after the training part (plus one warm-up window), at least `GAP` bars
apart, and for market series only inside the regular session (a "stuck" price in a thin
pre-market where nothing trades would not be an anomaly at all).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from detection.detectors.seasonality import bucket_ids, infer_step_seconds

__all__ = ["KINDS", "Label", "inject"]

KINDS = ("spike", "level_shift", "volatility_burst", "volume_surge", "stuck")
LENGTH = {"spike": 1, "level_shift": 1, "volatility_burst": 30, "volume_surge": 3, "stuck": 25}
GAP = 100
PER_KIND = 3
_PRICE = ["open", "high", "low", "close", "value"]


@dataclass
class Label:
    kind: str
    start: int
    end: int  # inclusive


def _sigma(logp: np.ndarray, i: int) -> float:
    r = np.diff(logp[max(0, i - 100): i])
    r = r[np.isfinite(r)]
    if not len(r):
        return 1e-3
    # The MAD alone is 0 when prices move in whole ticks and most bars do not move.
    dev = np.abs(r - np.median(r))
    return float(max(np.median(dev) * 1.4826, np.mean(dev) * 1.2533, 1e-5))


def _scale_prices(f: pd.DataFrame, rows: slice | np.ndarray, factor) -> None:
    for c in _PRICE:
        if c in f.columns:
            f.loc[rows, c] = f.loc[rows, c].to_numpy() * factor


def _positions(f: pd.DataFrame, first: int, rng: np.random.Generator, calendar: str | None) -> list[int]:
    n = len(f)
    ok = np.zeros(n, dtype=bool)
    ok[first: n - 40] = True
    step = infer_step_seconds(f["ts"])
    if calendar and step < 86_400:
        b = bucket_ids(f["ts"], "market", step, calendar)
        ok &= b < 20  # regular session buckets
    chosen: list[int] = []
    candidates = rng.permutation(np.flatnonzero(ok))
    for c in candidates:
        if all(abs(int(c) - p) > GAP for p in chosen):
            chosen.append(int(c))
        if len(chosen) == PER_KIND * len(KINDS):
            break
    return sorted(chosen)


def inject(frame: pd.DataFrame, first: int, seed: int, calendar: str | None = "XNYS"
           ) -> tuple[pd.DataFrame, list[Label]]:
    """A copy of `frame` with anomalies after row `first`, and their labels."""
    rng = np.random.default_rng(seed)
    f = frame.copy()
    positions = _positions(f, first, rng, calendar)
    kinds = [KINDS[k % len(KINDS)] for k in range(len(positions))]
    rng.shuffle(kinds)
    labels = []
    for i, kind in zip(positions, kinds, strict=True):
        L = LENGTH[kind]
        logp = np.log(f["value"].to_numpy())
        sig = _sigma(logp, i)
        sign = rng.choice([-1.0, 1.0])
        k = rng.uniform(8, 12)
        if kind == "spike":
            _scale_prices(f, slice(i, i), np.exp(sign * k * sig))
        elif kind == "level_shift":
            _scale_prices(f, slice(i, len(f) - 1), np.exp(sign * k * sig))
        elif kind == "volatility_burst":
            r = np.diff(logp[i - 1: i + L])
            extra = np.cumsum(4.0 * (r - np.median(r)))  # returns become 5x their deviation
            factor = np.exp(np.concatenate([extra, np.full(len(f) - i - L, extra[-1])]))
            _scale_prices(f, slice(i, len(f) - 1), factor)
        elif kind == "volume_surge":
            logv = np.log1p(f["volume"].to_numpy()[max(0, i - 100): i])
            med = float(np.median(logv))
            spread = float(np.median(np.abs(logv - med)) * 1.4826)
            factor = max(10.0, float(np.exp(rng.uniform(6, 9) * spread)))
            f.loc[i: i + L - 1, "volume"] = np.maximum(f.loc[i: i + L - 1, "volume"], np.expm1(med)) * factor
        elif kind == "stuck":
            frozen = float(f["value"].iloc[i - 1])
            for c in _PRICE:
                if c in f.columns:
                    f.loc[i: i + L - 1, c] = frozen
        labels.append(Label(kind, i, i + L - 1))
    return f, labels
