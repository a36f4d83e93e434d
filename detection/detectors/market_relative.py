"""Market-relative wrapper: score a symbol's move net of its benchmark's move.

When SPY drops 3 % in a minute, thirty watched stocks drop with it; each is unremarkable
*relative to the market*. This wrapper needs a `benchmark` column (the benchmark's price at the
same timestamps; the pipeline joins it on ts) and turns the pair into a residual price series

    rel_t = rel_{t-1} * exp(r_t - beta * b_t),   rel_0 = value_0,

where r and b are the log-returns of the symbol and the benchmark and beta is fitted on the
training data (a robust slope, clipped to [0, 3]). The inner detector (any registered one)
scores rel as if it were the series; its band is mapped back to the symbol's price by adding
beta times the benchmark's return. Causal: rel_t uses returns up to t only; the running level
is part of the streaming state.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import DETECTORS, Detector, RawScores, get_detector_class, register
from .serialization import prefixed, unprefixed

__all__ = ["MarketRelative"]


def _logret(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.diff(np.log(np.where(x > 0, x, np.nan)), prepend=np.nan)


@register
class MarketRelative(Detector):
    name = "market_relative"
    defaults = {"inner": "robust_zscore", "inner_params": {}}

    def __init__(self, **params):
        super().__init__(**params)
        inner = self.params["inner"]
        if inner not in DETECTORS or inner == self.name:
            raise TypeError(f"market_relative: unknown inner detector {inner!r}")
        self.inner: Detector = get_detector_class(inner)(
            **{"seed": self.params["seed"], "calendar": self.params["calendar"], **self.params["inner_params"]})
        self.beta = 1.0
        self._level = np.nan  # last relative level and last raw prices (streaming state)
        self._last = (np.nan, np.nan)

    @property
    def min_history(self) -> int:
        return self.inner.min_history

    def reset_state(self) -> None:
        super().reset_state()
        self._level, self._last = np.nan, (np.nan, np.nan)
        if hasattr(self, "inner"):
            self.inner.reset_state()

    def _relative(self, frame: pd.DataFrame) -> pd.DataFrame:
        v = np.concatenate([[self._last[0]], frame["value"].to_numpy()])
        b = np.concatenate([[self._last[1]], frame["benchmark"].to_numpy()])
        resid = np.nan_to_num((_logret(v) - self.beta * _logret(b))[1:])
        start = self._level if np.isfinite(self._level) else float(frame["value"].iloc[0])
        rel = start * np.exp(np.cumsum(resid))
        self._level, self._last = float(rel[-1]), (float(v[-1]), float(b[-1]))
        # Volume stays (a volume surge is not explained by the benchmark); OHLC would be stale.
        keep = [c for c in frame.columns if c in ("ts", "volume", "trade_count")]
        return frame[keep].assign(value=rel)

    def _fit(self, frame: pd.DataFrame) -> dict:
        if "benchmark" not in frame.columns:
            raise ValueError("market_relative needs a `benchmark` column")
        r, b = _logret(frame["value"].to_numpy()), _logret(frame["benchmark"].to_numpy())
        ok = np.isfinite(r) & np.isfinite(b)
        self.beta = _robust_beta(r[ok], b[ok])
        self.reset_state()
        report = self.inner.fit(self._relative(frame))
        return {"beta": self.beta, "inner": report}

    def _raw(self, full: pd.DataFrame, start: int) -> RawScores:
        frame = full.iloc[start:]
        prev_v = np.concatenate([[self._last[0]], frame["value"].to_numpy()[:-1]])
        prev_b = np.concatenate([[self._last[1]], frame["benchmark"].to_numpy()[:-1]])
        prev_rel = self._level
        rel = self._relative(frame)
        res = self.inner.score(rel)
        rel_prev = np.concatenate([[prev_rel], rel["value"].to_numpy()[:-1]])
        with np.errstate(divide="ignore", invalid="ignore"):
            # price = previous price * benchmark move ** beta * relative move
            anchor = prev_v * np.power(frame["benchmark"].to_numpy() / prev_b, self.beta) / rel_prev

        def band(_thresholds: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return anchor * res.expected, anchor * res.lower, anchor * res.upper

        def notes(i: int) -> dict:
            return {"beta": round(self.beta, 3), "inner": res.explanation[i]}

        return RawScores(channels={"relative": res.severity}, band=band, notes=notes)

    def _model_dump(self) -> tuple[dict, dict]:
        meta, arrays = self.inner._dump(include_state=False)
        return {"beta": self.beta, "inner": meta}, prefixed("inner", arrays)

    def _model_load(self, meta: dict, arrays: dict) -> None:
        self.beta = float(meta["beta"])
        self.inner._load(meta["inner"], unprefixed("inner", arrays))

    def _state_dump(self) -> tuple[dict, dict]:
        meta, arrays = super()._state_dump()
        inner_meta, inner_arrays = self.inner._state_dump()
        meta.update({"level": self._level, "last": list(self._last), "inner": inner_meta})
        arrays.update(prefixed("inner", inner_arrays))
        return meta, arrays

    def _state_load(self, meta: dict, arrays: dict) -> None:
        super()._state_load(meta, arrays)
        self._level, self._last = float(meta["level"]), (float(meta["last"][0]), float(meta["last"][1]))
        self.inner._state_load(meta["inner"], unprefixed("inner", arrays))


def _robust_beta(r: np.ndarray, b: np.ndarray) -> float:
    """Least-squares slope on winsorised, median-centred returns, clipped to [0, 3]."""
    if len(r) < 10:
        return 1.0
    rc, bc = r - np.median(r), b - np.median(b)
    lim_r = 5 * np.median(np.abs(rc)) * 1.4826 + 1e-12
    lim_b = 5 * np.median(np.abs(bc)) * 1.4826 + 1e-12
    rc, bc = np.clip(rc, -lim_r, lim_r), np.clip(bc, -lim_b, lim_b)
    denom = float(np.sum(bc * bc))
    return float(np.clip(np.sum(rc * bc) / denom, 0.0, 3.0)) if denom > 0 else 1.0
