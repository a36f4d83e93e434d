"""Isolation Forest on the scale-free feature vector (feature_vectors.py).

Training uses scikit-learn (imported lazily); the fitted forest is exported to numpy arrays
(forest_arrays.py) and scored without scikit-learn, which is both the fast path and the
artifact format: no estimator object is ever serialized.

Raw statistic: c(psi) / E[h(x)], i.e. how much faster than an average point x is isolated
(about 1 for ordinary points, 2-4 for outliers); its threshold is learned from the training
tail like every other channel. Explanation for anomalies: the features furthest from their
training median in robust-z units (an attribution heuristic, cheap and stable).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import transforms
from .base import Detector, RawScores, register
from .feature_vectors import LONGEST_WINDOW, market_features, value_features
from .forest_arrays import export_forest, forest_path_lengths
from .seasonality import infer_step_seconds

__all__ = ["IsolationForestDetector"]

_MAD_TO_SIGMA = 1.4826
_MARKET_WINDOW_SECONDS = 15 * 60  # the longest clock window of the seed 001 table
# The seed 001 columns the forest uses by default. Isolation forests pick split features at
# random, so every redundant column (vwap_5m next to vwap_15m, momentum_1m next to the step)
# dilutes the informative ones; on the evaluation set the full table halved recall, and even
# these cost F1 against value features alone (0.40 vs 0.48: natural volume outliers get
# isolated too); `market_features=False` turns them off. These add
# what the value features lack: volume, distance from VWAP, clock-window volatility, prints.
MARKET_COLUMNS = ("log_volume_ratio", "close_vs_vwap_15m", "realized_vol_15m", "log_avg_trade_size_1m")


@register
class IsolationForestDetector(Detector):
    name = "isolation_forest"
    defaults = {"n_estimators": 100, "max_samples": 256, "market_features": "auto",
                "market_columns": list(MARKET_COLUMNS),
                "transform": "auto", "top_features": 3,
                # In-sample training scores: only the extreme tail is a fair threshold.
                "calibration_quantile": 0.995, "calibration_margin": 1.0}
    floors = {"isolation": 1.4}

    def __init__(self, **params):
        super().__init__(**params)
        self.kind, self.step_scale, self.step = "level", 1.0, 60.0
        self.use_market = False
        self.columns: list[str] = []
        self.forest: dict[str, np.ndarray] = {}
        self.center = self.spread = np.zeros(0)

    @property
    def context(self) -> int:
        clock_rows = math.ceil(_MARKET_WINDOW_SECONDS / max(self.step, 1.0)) if self.use_market else 0
        return LONGEST_WINDOW + 2 + min(clock_rows, 5000)

    @property
    def min_history(self) -> int:
        return LONGEST_WINDOW // 2

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's input matrix for `frame` (trailing windows only)."""
        parts = [value_features(frame["value"].to_numpy(), self.kind, self.step_scale)]
        if self.use_market:
            market = market_features(frame)
            parts.append(market[[c for c in self.params["market_columns"] if c in market.columns]])
        return pd.concat(parts, axis=1)

    def _fit(self, frame: pd.DataFrame) -> dict:
        from sklearn.ensemble import IsolationForest

        p = self.params
        has_bars = {"open", "high", "low", "volume"} <= set(frame.columns)
        self.kind = transforms.choose(p["transform"], frame["value"].to_numpy(),
                                      bool(p["calendar"]) or has_bars, window=240)
        step = transforms.transform(frame["value"].to_numpy(), "diff" if self.kind == "level" else self.kind)
        step = step[np.isfinite(step)]
        mad = float(np.median(np.abs(step - np.median(step)))) if len(step) else 0.0
        # The MAD is 0 for series that rarely move; fall back to the standard deviation, then 1.
        self.step_scale = (mad * _MAD_TO_SIGMA or float(np.std(step))) if len(step) else 0.0
        self.step_scale = self.step_scale or 1.0
        self.step = infer_step_seconds(frame["ts"]) or 60.0
        self.use_market = has_bars if p["market_features"] == "auto" else bool(p["market_features"])
        X = self.features(frame)
        self.columns = list(X.columns)
        Xt = X.iloc[self.min_history:].to_numpy(dtype="float64") if len(X) > 2 * self.min_history else X.to_numpy()
        model = IsolationForest(n_estimators=p["n_estimators"], max_samples=min(p["max_samples"], len(Xt)),
                                random_state=p["seed"]).fit(Xt.astype(np.float32))
        self.forest = export_forest(model)
        self.center = np.median(Xt, axis=0)
        self.spread = np.maximum(np.median(np.abs(Xt - self.center), axis=0) * _MAD_TO_SIGMA, 1e-6)
        return {"features": self.columns, "transform": self.kind, "train_rows": int(len(Xt))}

    def isolation(self, X: np.ndarray) -> np.ndarray:
        """Raw statistic c(psi) / E[h(x)] for a feature matrix (the hot path)."""
        return self.forest["normalizer"][0] / forest_path_lengths(self.forest, X)

    def _raw(self, full: pd.DataFrame, start: int) -> RawScores:
        if not self.fitted:
            return RawScores(channels={"isolation": np.full(len(full) - start, np.nan)})
        X = self.features(full).iloc[start:].to_numpy(dtype="float64")
        raw = self.isolation(X)
        k = int(self.params["top_features"])

        def notes(i: int) -> dict:
            z = (X[i] - self.center) / self.spread
            order = np.argsort(-np.abs(z))[:k]
            return {"top_features": [{"feature": self.columns[j], "z": round(float(z[j]), 2)}
                                     for j in order]}

        return RawScores(channels={"isolation": raw}, notes=notes)

    def _model_dump(self) -> tuple[dict, dict]:
        meta = {"kind": self.kind, "step_scale": self.step_scale, "step": self.step,
                "use_market": self.use_market, "columns": self.columns}
        return meta, {**{f"forest.{k}": v for k, v in self.forest.items()},
                      "center": self.center, "spread": self.spread}

    def _model_load(self, meta: dict, arrays: dict) -> None:
        self.kind, self.step_scale = meta["kind"], float(meta["step_scale"])
        self.step, self.use_market = float(meta["step"]), bool(meta["use_market"])
        self.columns = list(meta["columns"])
        self.forest = {k: arrays[f"forest.{k}"] for k in ("feature", "threshold", "leaf", "normalizer")}
        self.center, self.spread = arrays["center"], arrays["spread"]
        if self.forest["feature"].max(initial=0) >= len(self.columns) or len(self.center) != len(self.columns):
            raise ValueError("forest refers to features it does not have")
