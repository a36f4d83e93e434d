"""Feature drift: population stability index (PSI) between a training and a recent window.

PSI = sum over bins of (recent% - train%) * ln(recent% / train%), with bins taken from the
training window's quantiles (so each holds ~1/n_bins of training data; ties collapse bins)
and both shares floored at `EPS` so that an empty bin costs a finite amount. Pure functions:
no state, no Django; NaNs are ignored.

Conventional reading (`drift_level`): < 0.1 stable, 0.1-0.25 moderate shift, >= 0.25 major
shift (retrain).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["EPS", "THRESHOLDS", "drift_level", "drifted_features", "psi", "psi_table"]

EPS = 1e-4
THRESHOLDS = {"moderate": 0.1, "major": 0.25}


def psi(train: np.ndarray, recent: np.ndarray, n_bins: int = 10) -> float:
    """PSI of one feature; NaN when either window has no finite values."""
    a = np.asarray(train, dtype="float64")
    b = np.asarray(recent, dtype="float64")
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not len(a) or not len(b):
        return float("nan")
    edges = np.unique(np.quantile(a, np.linspace(0, 1, n_bins + 1)[1:-1]))
    pa = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1) / len(a)
    pb = np.bincount(np.searchsorted(edges, b, side="right"), minlength=len(edges) + 1) / len(b)
    pa, pb = np.maximum(pa, EPS), np.maximum(pb, EPS)
    return float(np.sum((pb - pa) * np.log(pb / pa)))


def psi_table(train: pd.DataFrame, recent: pd.DataFrame, n_bins: int = 10) -> dict[str, float]:
    """PSI per column present in both frames."""
    return {c: psi(train[c].to_numpy(), recent[c].to_numpy(), n_bins)
            for c in train.columns if c in recent.columns}


def drift_level(value: float) -> str:
    if not np.isfinite(value):
        return "unknown"
    if value >= THRESHOLDS["major"]:
        return "major"
    return "moderate" if value >= THRESHOLDS["moderate"] else "stable"


def drifted_features(table: dict[str, float], threshold: float = THRESHOLDS["major"]) -> list[str]:
    """Features whose PSI reaches `threshold`, worst first (the threshold helper for alerts)."""
    hits = [(v, k) for k, v in table.items() if np.isfinite(v) and v >= threshold]
    return [k for _, k in sorted(hits, reverse=True)]
