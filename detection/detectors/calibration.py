"""Turning raw statistics into comparable scores.

Each channel of a detector yields a raw statistic (a robust |z|, a path-length deficit, a scaled
forecast residual). A `TailCalibrator` learns the channel's threshold from the upper tail of
its own causally computed training values (a high quantile times a margin, never below a
floor that encodes "this is surprising in absolute terms"). Severity = raw / threshold, so 1.0
is the decision boundary on every series, and `severity_to_score` maps it onto [0, 1] with 0.5
at the boundary: a threshold on the score means the same thing across series.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["TailCalibrator", "severity_to_score"]


@dataclass
class TailCalibrator:
    threshold: float
    quantile_value: float = float("nan")
    n: int = 0

    @classmethod
    def fit(cls, values: np.ndarray, floor: float, quantile: float = 0.999,
            margin: float = 1.0) -> TailCalibrator:
        v = np.asarray(values, dtype="float64")
        v = v[np.isfinite(v)]
        if len(v) == 0:
            return cls(threshold=float(floor))
        q = float(np.quantile(v, quantile))
        return cls(threshold=float(max(floor, q * margin)), quantile_value=q, n=int(len(v)))

    def severity(self, raw: np.ndarray) -> np.ndarray:
        r = np.nan_to_num(np.asarray(raw, dtype="float64"), nan=0.0, posinf=1e6, neginf=0.0)
        return np.maximum(r, 0.0) / self.threshold

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TailCalibrator:
        return cls(threshold=float(d["threshold"]), quantile_value=float(d["quantile_value"]),
                   n=int(d["n"]))


def severity_to_score(severity: np.ndarray) -> np.ndarray:
    """Monotone map of severity >= 0 onto [0, 1): 0 -> 0, 1 -> 0.5, 2 -> 0.94."""
    s = np.maximum(np.asarray(severity, dtype="float64"), 0.0)
    return 1.0 - np.power(0.5, np.minimum(s * s, 1e3))
