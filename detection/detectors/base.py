"""The one detector interface, its registry, and the streaming machinery every detector shares.

Input contract (`as_frame`): a pandas DataFrame or a mapping with
- `ts`: int64 nanoseconds since the epoch (UTC), or datetime64 (tz-aware, or naive = UTC); a
  DataFrame may carry it as its DatetimeIndex instead. Rows must be in non-decreasing time
  order, and each batch must start at or after the last row already scored.
- `value`: float, the series being watched (for bars: the close; `close` is used when `value`
  is absent).
- optional `open, high, low, volume, trade_count` (bars), `benchmark` (the benchmark's value at
  the same times, for the market-relative wrapper), and feature columns named as in
  `watchlists.features.FEATURE_COLUMNS` (a mapping may pass them as a `features` DataFrame).
- optional `calendar` (mapping key or `DataFrame.attrs`), e.g. "XNYS", for market series; the
  detector parameter `calendar` does the same and wins when both are set.

Output contract (`ScoreResult`, one entry per input row, in order):
- `score` in [0, 1]; 0.5 is the detector's learned threshold, so `is_anomaly == (score >= 0.5)`
  and the same score means the same degree of surprise on every series.
- `expected`, `lower`, `upper`: the expected value and the band outside which a point is an
  anomaly (NaN when the detector cannot express one, e.g. the forest).
- `explanation`: a dict per point (`channel` that drove the score, `severity` = raw / threshold,
  and detector-specific keys such as `top_features`).
- Warm-up: until a detector has seen `min_history` points (in its streaming state) it cannot
  judge; those points get score 0.0, is_anomaly False, `warming_up` True and an explanation
  `{"status": "warming_up", "needs_points": n}`. 0.0 rather than NaN keeps CSV consumers simple.

Causality: the score of row t is a function of the fitted model and rows <= t only. Every
detector computes its statistics with trailing windows over (buffer + batch) and keeps the last
`context` rows as its streaming state, with `context` >= its longest window, so scoring a series
in one batch or in many gives identical results. Determinism: no randomness at scoring time;
training is seeded by the `seed` parameter.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .calibration import TailCalibrator, severity_to_score
from .serialization import ArtifactError, pack, prefixed, unpack, unprefixed

__all__ = [
    "DETECTORS", "Detector", "DetectorInputError", "RawScores", "ScoreResult", "as_frame",
    "get_detector_class", "load_detector", "register",
]

DETECTORS: dict[str, type[Detector]] = {}
OPTIONAL_COLUMNS = ("open", "high", "low", "close", "volume", "trade_count", "benchmark")


class DetectorInputError(ValueError):
    """The input frame breaks the contract (missing columns, unordered or unparsable times)."""


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make a detector available by its `name` (plug-in point for new ones)."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} needs a class attribute `name`")
    DETECTORS[cls.name] = cls
    return cls


def get_detector_class(name: str) -> type[Detector]:
    try:
        return DETECTORS[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; known: {sorted(DETECTORS)}") from None


def load_detector(blob: bytes) -> Detector:
    """Load any registered detector from its artifact (the header names the class)."""
    header, _ = unpack(blob)
    kind = header.get("kind")
    if kind not in DETECTORS:
        raise ArtifactError(f"artifact holds unknown detector kind {kind!r}")
    return DETECTORS[kind].from_bytes(blob)


def as_frame(data: Any) -> tuple[pd.DataFrame, str | None]:
    """Normalize input to a DataFrame with a RangeIndex, `ts` (datetime64[ns, UTC]) and `value`."""
    calendar = None
    if isinstance(data, Mapping):
        calendar = data.get("calendar")
        features = data.get("features")
        frame = pd.DataFrame({k: v for k, v in data.items() if k not in ("calendar", "features")})
        if features is not None:
            frame = pd.concat([frame, pd.DataFrame(features).reset_index(drop=True)], axis=1)
    elif isinstance(data, pd.DataFrame):
        calendar = data.attrs.get("calendar")
        frame = data if "ts" in data.columns else data.reset_index(names="ts")
    else:
        raise DetectorInputError(f"expected a DataFrame or a mapping, got {type(data).__name__}")
    if "ts" not in frame.columns:
        raise DetectorInputError("input has no `ts` column or DatetimeIndex")
    if "value" not in frame.columns:
        if "close" not in frame.columns:
            raise DetectorInputError("input has no `value` (or `close`) column")
        frame = frame.assign(value=frame["close"])
    ts = frame["ts"]
    try:
        if pd.api.types.is_integer_dtype(ts.dtype):
            ts = pd.to_datetime(ts.to_numpy(dtype="int64"), unit="ns", utc=True)
        else:
            ts = pd.to_datetime(ts, utc=True)
    except (ValueError, TypeError) as exc:
        raise DetectorInputError(f"unparsable `ts`: {exc}") from exc
    out = frame.drop(columns=["ts"]).astype("float64")
    out.insert(0, "ts", pd.DatetimeIndex(ts).as_unit("ns"))
    out = out.reset_index(drop=True)
    if len(out) > 1 and (np.diff(ts_ns(out["ts"])) < 0).any():
        raise DetectorInputError("rows must be in non-decreasing `ts` order")
    return out, calendar


def ts_ns(ts: pd.Series) -> np.ndarray:
    """int64 nanoseconds since the epoch (UTC) of a datetime column."""
    return pd.DatetimeIndex(ts).as_unit("ns").asi8


@dataclass
class RawScores:
    """What a detector computes for the new rows of a batch, before calibration."""

    channels: dict[str, np.ndarray]  # >= 0, larger = more anomalous; NaN = no opinion yet
    # Maps the threshold of each channel to (expected, lower, upper) in value space.
    band: Callable[[dict[str, float]], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
    notes: Callable[[int], dict] | None = None  # extra explanation for point i (anomalies only)


@dataclass
class ScoreResult:
    ts: np.ndarray
    score: np.ndarray
    is_anomaly: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    severity: np.ndarray
    warming_up: np.ndarray
    explanation: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.score)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({
            "ts": self.ts, "anomaly_score": self.score, "is_anomaly": self.is_anomaly,
            "expected": self.expected, "lower": self.lower, "upper": self.upper,
            "warming_up": self.warming_up, "explanation": self.explanation,
        })


class Detector:
    """Base class. Subclasses set `name`, `defaults`, and implement `_fit`, `_raw`, and the
    model half of serialization (`_model_dump`/`_model_load`); streaming, warm-up, calibration
    and the container format live here."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict] = {}
    # Severity floors per channel: a threshold is never below this, whatever training showed.
    floors: ClassVar[dict[str, float]] = {}
    # Per-channel multiplier on the training quantile (default: the `calibration_margin` param).
    margins: ClassVar[dict[str, float]] = {}
    base_defaults: ClassVar[dict] = {
        "seed": 0, "calendar": None, "calibration_quantile": 0.99, "calibration_margin": 1.0,
    }

    def __init__(self, **params: Any) -> None:
        allowed = {**self.base_defaults, **self.defaults}
        unknown = set(params) - set(allowed)
        if unknown:
            raise TypeError(f"{self.name}: unknown parameters {sorted(unknown)}")
        self.params = {**allowed, **params}
        json.dumps(self.params)  # parameters travel in the artifact header; fail early
        self.fitted = False
        self.calibrators: dict[str, TailCalibrator] = {}
        self.reset_state()

    # ---- sizes; subclasses refine ----
    @property
    def context(self) -> int:
        """Rows of history kept between batches (>= the longest trailing window)."""
        return 0

    @property
    def min_history(self) -> int:
        """Points the streaming state must have seen before scores are meaningful."""
        return 0

    # ---- public API ----
    def fit(self, data: Any) -> dict:
        """Train on history, learn thresholds, and leave the streaming state at the end of it.

        Calibration scores the training rows causally (a fresh state, no peeking ahead) and
        fits one tail threshold per channel, unless `_fit` already set it (the LSTM learns its
        threshold from validation residuals instead)."""
        frame, calendar = as_frame(data)
        if calendar and not self.params.get("calendar"):
            self.params["calendar"] = calendar
        self.calibrators = {}
        report = dict(self._fit(frame) or {})
        self.fitted = True
        self.reset_state()
        raw, _ = self._advance(frame)
        warm = self._warm_mask(0, len(frame))
        for ch, values in raw.channels.items():
            if ch not in self.calibrators:
                self.calibrators[ch] = TailCalibrator.fit(
                    values[~warm], floor=self.floors.get(ch, 1.0),
                    quantile=self.params["calibration_quantile"],
                    margin=self.margins.get(ch, self.params["calibration_margin"]))
        report["thresholds"] = {ch: c.threshold for ch, c in self.calibrators.items()}
        report["train_points"] = len(frame)
        return report

    def score(self, data: Any) -> ScoreResult:
        """Score new rows causally and advance the streaming state past them."""
        frame, _ = as_frame(data)
        seen_before = self._seen
        raw, _ = self._advance(frame)
        return self._finish(frame, raw, self._warm_mask(seen_before, len(frame)))

    def status(self) -> dict:
        needs = max(0, self.min_history - self._seen)
        return {"state": "ready" if needs == 0 else "warming_up", "needs_points": int(needs),
                "fitted": self.fitted}

    def reset_state(self) -> None:
        """Forget the streaming state (the fitted model stays)."""
        self._buffer: pd.DataFrame | None = None
        self._seen = 0

    # ---- streaming internals ----
    def _warm_mask(self, seen_before: int, n: int) -> np.ndarray:
        return (seen_before + np.arange(n)) < self.min_history

    def _advance(self, frame: pd.DataFrame) -> tuple[RawScores, int]:
        buf = self._buffer
        if buf is not None and len(buf) and len(frame):
            if frame["ts"].iloc[0] < buf["ts"].iloc[-1]:
                raise DetectorInputError("batch starts before the last row already scored")
            full = pd.concat([buf, frame], ignore_index=True)
        else:
            full = frame
        start = len(full) - len(frame)
        raw = self._raw(full, start)
        ctx = self.context
        self._buffer = full.iloc[-ctx:].reset_index(drop=True) if ctx else None
        self._seen += len(frame)
        return raw, start

    def _finish(self, frame: pd.DataFrame, raw: RawScores, warm: np.ndarray) -> ScoreResult:
        n = len(frame)
        names = list(raw.channels)
        sev = np.zeros((len(names), n))
        for k, ch in enumerate(names):
            cal = self.calibrators.get(ch) or TailCalibrator(threshold=self.floors.get(ch, 1.0))
            sev[k] = cal.severity(raw.channels[ch])
        sev[:, warm] = 0.0
        top = sev.argmax(axis=0) if names else np.zeros(n, dtype=int)
        severity = sev.max(axis=0) if names else np.zeros(n)
        score = self.score_from_severity(severity)
        flags = severity >= 1.0
        nan = np.full(n, np.nan)
        expected, lower, upper = nan, nan, nan
        if raw.band is not None:
            thresholds = {ch: (self.calibrators[ch].threshold if ch in self.calibrators
                               else self.floors.get(ch, 1.0)) for ch in names}
            expected, lower, upper = raw.band(thresholds)
        # Plain Python lists: per-row numpy scalars and round() cost more than the scoring.
        rounded = np.round(severity, 4).tolist()
        channel = [names[t] for t in top.tolist()] if names else [None] * n
        warm_rows, flag_rows = warm.tolist(), flags.tolist()
        explanation = []
        for i in range(n):
            if warm_rows[i]:
                explanation.append({"status": "warming_up",
                                    "needs_points": int(self.min_history - (self._seen - n + i))})
                continue
            e = {"channel": channel[i], "severity": rounded[i]}
            if flag_rows[i] and raw.notes is not None:
                e.update(raw.notes(i))
            explanation.append(e)
        return ScoreResult(ts=ts_ns(frame["ts"]), score=score, is_anomaly=flags, expected=expected,
                           lower=lower, upper=upper, severity=severity, warming_up=warm,
                           explanation=explanation)

    def score_from_severity(self, severity: np.ndarray) -> np.ndarray:
        """The published score of a severity: monotone, severity 1 -> 0.5."""
        return severity_to_score(severity)

    # ---- serialization ----
    def to_bytes(self, include_state: bool = True) -> bytes:
        """The model artifact (plus the streaming state unless include_state=False)."""
        meta, arrays = self._dump(include_state)
        return pack({"kind": self.name, "format": 1, **meta}, arrays)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Detector:
        header, arrays = unpack(blob, expected_kind=cls.name)
        try:
            det = cls(**header["params"])
            det._load(header, arrays)
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ArtifactError(f"{cls.name} artifact is inconsistent: {exc!r}") from exc
        return det

    def state_to_bytes(self) -> bytes:
        """Only the streaming state (small; the pipeline stores it per series between batches)."""
        meta, arrays = self._state_dump()
        return pack({"kind": f"{self.name}:state", "format": 1, "state": meta}, arrays)

    def load_state(self, blob: bytes) -> None:
        header, arrays = unpack(blob, expected_kind=f"{self.name}:state")
        try:
            self._state_load(header["state"], arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{self.name} state is inconsistent: {exc!r}") from exc

    def _dump(self, include_state: bool) -> tuple[dict, dict]:
        model_meta, model_arrays = self._model_dump() if self.fitted else ({}, {})
        meta = {"params": self.params, "fitted": self.fitted, "model": model_meta,
                "calibrators": {ch: c.to_dict() for ch, c in self.calibrators.items()}}
        arrays = prefixed("model", model_arrays)
        if include_state:
            state_meta, state_arrays = self._state_dump()
            meta["state"] = state_meta
            arrays.update(prefixed("state", state_arrays))
        return meta, arrays

    def _load(self, header: dict, arrays: dict) -> None:
        self.fitted = bool(header["fitted"])
        self.calibrators = {ch: TailCalibrator.from_dict(d) for ch, d in header["calibrators"].items()}
        if self.fitted:
            self._model_load(header["model"], unprefixed("model", arrays))
        if "state" in header:
            self._state_load(header["state"], unprefixed("state", arrays))

    def _state_dump(self) -> tuple[dict, dict]:
        buf = self._buffer
        arrays = {}
        if buf is not None:
            arrays["ts"] = ts_ns(buf["ts"])
            arrays.update({f"col.{c}": buf[c].to_numpy() for c in buf.columns if c != "ts"})
        return {"seen": self._seen, "columns": list(buf.columns) if buf is not None else None}, arrays

    def _state_load(self, meta: dict, arrays: dict) -> None:
        self._seen = int(meta["seen"])
        cols = meta["columns"]
        if cols is None:
            self._buffer = None
            return
        data = {"ts": pd.to_datetime(arrays["ts"].astype("int64"), unit="ns", utc=True)}
        data.update({c: arrays[f"col.{c}"].astype("float64") for c in cols if c != "ts"})
        self._buffer = pd.DataFrame(data)[cols]

    # ---- to implement ----
    def _fit(self, frame: pd.DataFrame) -> dict:
        return {}

    def _raw(self, full: pd.DataFrame, start: int) -> RawScores:
        raise NotImplementedError

    def _model_dump(self) -> tuple[dict, dict]:
        return {}, {}

    def _model_load(self, meta: dict, arrays: dict) -> None:
        pass
