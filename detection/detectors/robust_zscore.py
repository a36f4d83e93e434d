"""Rolling robust z-score (median / MAD) with seasonal profiles; no model beyond a warm-up.

Channels (the point's severity is the worst of them):
- `value`: |z| of the transformed value (see transforms.py: log-returns for market prices,
  the level for stationary series, differences for random-walk-like ones). The baseline is the
  trailing median / MAD of the previous `window` points, *excluding* the current one, after
  removing the seasonal bucket's location and dividing by its scale ratio.
- `volatility` (return-like transforms): mean absolute deviation of the last 10 points over
  the baseline spread from before them: a volatility burst, even when no single point of it
  is extreme.
- `volume` (when the input has volume): upward |z| of log1p(volume), same machinery. Volume
  has a strong intraday U-shape, which the market-session profile absorbs.
- `stuck`: how surprising the current run of exactly repeated values is (a frozen feed):
  run length x -log10(share of unchanged steps in training), i.e. the decimal log of the
  odds of such a run if steps were independent. A price that changes nearly every bar is
  suspicious after a few repeats; a rounded or sparse count series needs a very long run. Only
  runs longer than twice the longest run of the training history count (and never one shorter
  than MIN_STUCK_RUN): a series that has been constant for stretches before (a metric that is 0
  half the time) has shown that stretches are its normal, and a longer stream will show a
  somewhat longer one by chance (once the longest run itself counted, sparse series alerted).

`fit` is optional and cheap: it picks the transform and seasonality mode and learns the seasonal
profiles and thresholds from history. Unfitted, the detector scores with a flat profile and
the threshold floors once it has `min_periods` points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import transforms
from .base import Detector, RawScores, register
from .seasonality import MARKET_BUCKETS, SeasonalProfile, bucket_ids, choose_mode, infer_step_seconds

__all__ = ["RobustZScore"]

_MAD_TO_SIGMA = 1.4826
_MEAN_AD_TO_SIGMA = 1.2533
SHORT = 20
MIN_STUCK_RUN = 4
BURST = 10
_N_BUCKETS = {"none": 1, "time_of_day": 24, "market": MARKET_BUCKETS}


@dataclass
class RobustZ:
    z: np.ndarray  # signed robust z of each point against the points before it
    center: np.ndarray  # trailing median (the expected value of y)
    sigma: np.ndarray  # spread used for z (deseasonalised units)
    burst: np.ndarray  # volatility of the last BURST points / baseline volatility before them


def robust_z(y: np.ndarray, scale: np.ndarray, window: int, min_periods: int, floor: float,
             spread: str = "mixed") -> RobustZ:
    """Causal robust z of `y` against the previous `window` points.

    `scale` is the seasonal scale ratio of each point (1 without seasonality); sigma is in
    deseasonalised units, so the point's own spread is sigma * scale. With spread="mixed"
    sigma is the largest of
    - the MAD of the window (robust, but 0 when most steps are 0: prices move in whole ticks),
    - the mean absolute deviation of the window (non-zero as soon as anything moves),
    - the mean absolute deviation of the last `SHORT` points, so that a volatile regime
      (a market sell-off) raises the bar quickly instead of alerting on every bar of it.
    spread="mad" uses the MAD alone (log volume: continuous, and its heavy *lower* tail of
    thin bars would inflate a mean for an upward-only channel).
    """
    s = pd.Series(y)
    med = s.rolling(window, min_periods=min_periods).median().shift(1).to_numpy()
    d = (y - med) / scale
    absd = pd.Series(np.abs(d))
    mad = absd.rolling(window, min_periods=min_periods).median().shift(1).to_numpy() * _MAD_TO_SIGMA
    base = mad
    sigma = mad
    if spread == "mixed":
        mean_ad = absd.rolling(window, min_periods=min_periods).mean().shift(1).to_numpy() * _MEAN_AD_TO_SIGMA
        recent = absd.rolling(SHORT, min_periods=SHORT // 2).mean().shift(1).to_numpy() * _MEAN_AD_TO_SIGMA
        base = np.fmax(mad, mean_ad)
        sigma = np.fmax(base, recent)
    sigma = np.fmax(sigma, floor)
    sigma[np.isnan(mad)] = np.nan  # still warming up
    # Burst: the last BURST deviations against the baseline from before they started.
    short = absd.rolling(BURST, min_periods=BURST).mean().to_numpy() * _MEAN_AD_TO_SIGMA
    lagged = pd.Series(np.maximum(base, floor)).shift(BURST - 1).to_numpy()  # NaN while warming up
    return RobustZ(z=d / sigma, center=med, sigma=sigma, burst=short / lagged)


@register
class RobustZScore(Detector):
    name = "robust_zscore"
    defaults = {
        "window": 240, "min_periods": 30, "transform": "auto", "seasonality": "auto",
        "split_aware": True, "split_factors": [], "use_volume": True, "detect_stuck": True,
    }
    # In sigma units (value, volume), a volatility ratio, and rows (stuck); see calibration.py.
    floors = {"value": 6.0, "volume": 5.5, "volatility": 3.5, "stuck": 6.0}
    margins = {"stuck": 1.5}

    def __init__(self, **params):
        super().__init__(**params)
        self.kind = "level" if self.params["transform"] == "auto" else self.params["transform"]
        self.mode, self.step = "none", 0.0
        self.profiles = {"value": SeasonalProfile(), "volume": SeasonalProfile()}
        self.sigma_floor = {"value": 1e-12, "volume": 1e-3}
        self.has_volume = False
        self.stuck_bits = 1.0  # -log10 P(unchanged step); 1.0 = "one in ten" until fitted
        self.stuck_from = MIN_STUCK_RUN  # shortest run that counts (2 x the longest in training)

    @property
    def context(self) -> int:
        # The MAD window looks back `window` points at deviations that each needed their own
        # `window`-point median; the burst baseline is lagged by BURST more; plus one row for
        # the difference.
        return 2 * int(self.params["window"]) + BURST + 3

    @property
    def min_history(self) -> int:
        return int(self.params["min_periods"]) + 1

    # ---- channel inputs ----
    def _value_series(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(transformed value in per-step units, split mask, the per-row time scale)."""
        x = transforms.transform(frame["value"].to_numpy(), self.kind)
        split = np.zeros(len(x), dtype=bool)
        if self.kind == "logret":
            x = transforms.apply_split_factors(x, frame["ts"], self.params["split_factors"])
            if self.params["split_aware"] and self.params["calendar"]:
                x, split = transforms.neutralize_splits(x, transforms.session_starts(frame["ts"]))
        tscale = np.ones(len(x))
        if self.kind != "level":
            tscale = transforms.gap_scale(frame["ts"], self.step)
        return x / tscale, split, tscale

    def _inputs(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        out = {"value": self._value_series(frame)[0]}
        if self.has_volume:
            out["volume"] = np.log1p(np.maximum(frame["volume"].to_numpy(), 0.0))
        return out

    def _fit(self, frame: pd.DataFrame) -> dict:
        p = self.params
        is_market = bool(p["calendar"]) or {"open", "high", "low"} <= set(frame.columns)
        values = frame["value"].to_numpy()
        self.kind = transforms.choose(p["transform"], values, is_market, p["window"])
        self.step = infer_step_seconds(frame["ts"])
        span = (frame["ts"].iloc[-1] - frame["ts"].iloc[0]).total_seconds() if len(frame) else 0.0
        self.mode = choose_mode(p["seasonality"], p["calendar"], self.step, span)
        self.has_volume = bool(p["use_volume"]) and "volume" in frame.columns
        buckets = bucket_ids(frame["ts"], self.mode, self.step, p["calendar"])
        for ch, y in self._inputs(frame).items():
            s = pd.Series(y)
            resid = (s - s.rolling(p["window"], min_periods=5).median()).to_numpy()
            self.profiles[ch] = SeasonalProfile.fit(buckets, resid, _N_BUCKETS[self.mode])
            spread = np.nanmedian(np.abs(resid - np.nanmedian(resid))) if np.isfinite(resid).any() else 0
            steps = np.abs(np.diff(y[np.isfinite(y)]))
            resolution = steps[steps > 0].min() if (steps > 0).any() else 1e-9
            # A series that is constant most of the time has MAD 0; without a floor every tick
            # would be infinitely surprising. Half the data's resolution is the natural unit.
            self.sigma_floor[ch] = float(max(0.1 * _MAD_TO_SIGMA * spread, 0.5 * resolution, 1e-12))
        same = np.mean(values[1:] == values[:-1]) if len(values) > 1 else 0.1
        self.stuck_bits = float(-np.log10(np.clip(same, 1e-3, 0.999)))
        longest = int(transforms.run_lengths(values, cap=p["window"]).max()) if len(values) else 0
        self.stuck_from = max(MIN_STUCK_RUN, 2 * longest + 1)
        return {"transform": self.kind, "seasonality": self.mode, "step_seconds": self.step}

    def _raw(self, full: pd.DataFrame, start: int) -> RawScores:
        p = self.params
        buckets = bucket_ids(full["ts"], self.mode, self.step, p["calendar"])
        channels, parts = {}, {}
        x_value, split, tscale = self._value_series(full)
        inputs = {"value": x_value}
        if self.has_volume and "volume" in full.columns:
            inputs["volume"] = np.log1p(np.maximum(full["volume"].to_numpy(), 0.0))
        for ch, y in inputs.items():
            loc, scale = self.profiles[ch].take(buckets)
            rz = robust_z(y - loc, scale, p["window"], p["min_periods"], self.sigma_floor[ch],
                          spread="mixed" if ch == "value" else "mad")
            z = rz.z[start:]
            channels[ch] = np.abs(z) if ch == "value" else np.maximum(z, 0.0)
            unit = tscale[start:] if ch == "value" else 1.0  # back to a move over this row's gap
            parts[ch] = (z, (loc + rz.center)[start:] * unit, (rz.sigma * scale)[start:] * unit)
            if ch == "value" and self.kind != "level":
                channels["volatility"] = rz.burst[start:]
        if p["detect_stuck"]:
            runs = transforms.run_lengths(full["value"].to_numpy(), cap=p["window"])[start:]
            channels["stuck"] = np.where(runs >= self.stuck_from, runs * self.stuck_bits, 0.0)
        prev = np.concatenate([[np.nan], full["value"].to_numpy()[:-1]])[start:]
        kind = self.kind

        def band(thresholds: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            _, center, spread = parts["value"]
            half = thresholds["value"] * spread
            lo, mid, hi = center - half, center, center + half
            if kind == "diff":
                return prev + mid, prev + lo, prev + hi
            if kind == "logret":
                return prev * np.exp(mid), prev * np.exp(lo), prev * np.exp(hi)
            return mid, lo, hi

        def notes(i: int) -> dict:
            out = {f"z_{ch}": round(float(parts[ch][0][i]), 3) for ch in parts}
            out["transform"] = kind
            if split[start + i]:
                out["split_adjusted"] = True
            return out

        return RawScores(channels=channels, band=band, notes=notes)

    def _model_dump(self) -> tuple[dict, dict]:
        meta = {"kind": self.kind, "mode": self.mode, "step": self.step, "has_volume": self.has_volume,
                "sigma_floor": self.sigma_floor, "stuck_bits": self.stuck_bits, "stuck_from": self.stuck_from}
        arrays = {}
        for ch, prof in self.profiles.items():
            arrays[f"{ch}.loc"], arrays[f"{ch}.scale"] = prof.loc, prof.scale
        return meta, arrays

    def _model_load(self, meta: dict, arrays: dict) -> None:
        self.kind, self.mode, self.step = meta["kind"], meta["mode"], float(meta["step"])
        self.has_volume = bool(meta["has_volume"])
        self.stuck_bits = float(meta["stuck_bits"])
        self.stuck_from = int(meta.get("stuck_from", MIN_STUCK_RUN))  # artifacts from before it
        self.sigma_floor = {k: float(v) for k, v in meta["sigma_floor"].items()}
        self.profiles = {ch: SeasonalProfile(arrays[f"{ch}.loc"], arrays[f"{ch}.scale"])
                         for ch in ("value", "volume")}
