"""Context detector: CAD OSE (Contextual Anomaly Detector, open-source edition) as a detector.

A learner that needs no model fitting: it memorises which coarse value patterns follow which
(context_memory.py) and scores how poorly the current step was predicted, in [0, 1]. NAB lists
CAD OSE at 69.9 (standard profile); it is strong exactly where the robust z-score is weak:
changed shapes and rhythms at ordinary levels.

- Encoding: the value's position in the training range, cut into 2**bits - 1 steps; each bit
  of that level is one sensor fact. Values outside the training range get levels beyond it
  (and a sign fact below it), so a new regime is new facts, which the memory then learns.
  (The published detector reads the whole file's min/max; this one only the training rows.)
- Model: the encoding range and the sizes. Streaming state: the context memory, learned from
  the stream itself from its first row (as published; replaying the training rows into it
  would make the first new rows look more surprising than the replay), and the refractory
  countdown. The first `rest_period` rows are its warm-up. Scoring is sequential, so one batch
  or many give identical scores.
- Refractory: after a raw score at or above `base_threshold`, the next `rest_period` scores are
  0 (one report per event, as published). `rest_period` = training rows / 5, within [5, 150].
- Score: raw surprise mapped monotonically so that `base_threshold` -> 0.5.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .base import Detector, RawScores, register
from .calibration import TailCalibrator
from .context_memory import ContextMemory

__all__ = ["ContextDetector"]

_BELOW = 1 << 20  # sensor fact marking a value below the training range
_MAX_LEVEL = 1 << 12


@register
class ContextDetector(Detector):
    name = "context_ose"
    defaults = {"bits": 3, "base_threshold": 0.75, "max_left": 7, "max_neurons": 15,
                "max_contexts": 500_000, "rest_period": "auto"}
    floors = {"context": 0.75}

    def __init__(self, **params):
        super().__init__(**params)
        self.lo, self.step = 0.0, 1.0
        self.rest = 30

    @property
    def min_history(self) -> int:
        return self.rest

    def _new_memory(self, arrays: dict[str, np.ndarray] | None = None) -> ContextMemory:
        p = self.params
        sizes = {"max_left": p["max_left"], "max_neurons": p["max_neurons"], "max_contexts": p["max_contexts"]}
        return ContextMemory.load(arrays, **sizes) if arrays else ContextMemory(**sizes)

    def reset_state(self) -> None:
        super().reset_state()
        self.memory = self._new_memory()
        self.quiet = getattr(self, "rest", 30)

    # ---- fit: the encoding and the sizes ----
    def _fit(self, frame: pd.DataFrame) -> dict:
        p = self.params
        values = frame["value"].to_numpy()
        values = values[np.isfinite(values)]
        if len(values) < 2:
            raise ValueError("context_ose needs at least 2 training rows")
        top = 2 ** int(p["bits"]) - 1
        self.lo = float(values.min())
        span = float(values.max()) - self.lo
        self.step = span / top if span > 0 else 1.0
        n = len(frame)
        self.rest = int(p["rest_period"]) if p["rest_period"] != "auto" else int(min(150, max(5, n // 5)))
        self.calibrators["context"] = TailCalibrator(threshold=float(p["base_threshold"]))
        return {"range": [self.lo, self.lo + span], "rest_period": self.rest}

    def encode(self, x: float) -> tuple[int, ...]:
        """Sorted sensor facts of one value: bit k of the level is fact 2k (0) or 2k + 1 (1)."""
        level = math.floor((x - self.lo) / self.step) if math.isfinite(x) else 0
        facts = [_BELOW] if level < 0 else []
        level = min(abs(level), _MAX_LEVEL)
        width = max(int(self.params["bits"]), level.bit_length())
        facts.extend(2 * k + ((level >> k) & 1) for k in range(width))
        return tuple(sorted(facts))

    # ---- scoring ----
    def _raw(self, full: pd.DataFrame, start: int) -> RawScores:
        values = full["value"].to_numpy()[start:]
        out = np.zeros(len(values))
        if not self.fitted:
            return RawScores(channels={"context": np.full(len(values), np.nan)})
        thr, rest, mem = float(self.params["base_threshold"]), self.rest, self.memory
        quiet = self.quiet
        for i, x in enumerate(values.tolist()):
            raw = mem.step(self.encode(x))
            out[i] = raw if quiet == 0 else 0.0
            quiet = rest if raw >= thr else max(quiet - 1, 0)
        self.quiet = quiet
        return RawScores(channels={"context": out})

    def score_from_severity(self, severity: np.ndarray) -> np.ndarray:
        """Piecewise-linear: raw 0 -> 0, base threshold -> 0.5, 1 -> 1 (monotone, no ties added)."""
        thr = float(self.params["base_threshold"])
        raw = np.clip(severity * thr, 0.0, 1.0)
        return np.where(raw < thr, 0.5 * raw / thr, 0.5 + 0.5 * (raw - thr) / (1.0 - thr))

    # ---- serialization ----
    def _model_dump(self) -> tuple[dict, dict]:
        return {"lo": self.lo, "step": self.step, "rest": self.rest}, {}

    def _model_load(self, meta: dict, arrays: dict) -> None:
        self.lo, self.step = float(meta["lo"]), float(meta["step"])
        self.rest = int(meta["rest"])

    def _state_dump(self) -> tuple[dict, dict]:
        meta, arrays = super()._state_dump()
        meta["quiet"] = self.quiet
        arrays.update({f"memory.{k}": v for k, v in self.memory.dump().items()})
        return meta, arrays

    def _state_load(self, meta: dict, arrays: dict) -> None:
        super()._state_load(meta, arrays)
        self.quiet = int(meta["quiet"])
        self.memory = self._new_memory({k[len("memory."):]: v for k, v in arrays.items() if k.startswith("memory.")})
