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

__all__ = ["AnomalyLikelihood", "TailCalibrator", "severity_to_score", "tail_to_score"]


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


@dataclass
class AnomalyLikelihood:
    """How rare the recent level of a raw statistic is against the series' own history.

    The idea of HTM's anomaly likelihood (Ahmad et al., 2017), in this project's terms: the
    mean of the last `short` raw values is compared with a normal fitted to the same short means
    over the previous `long` points; the likelihood is that normal's CDF at the current short
    mean. 0.99999 therefore means the same rarity on any series, for any detector, and a raw
    statistic that stays high (a new regime) stops being rare once the history has absorbed
    it: after about `long` points at most, usually much sooner.

    Streaming and causal: the state is the last `short - 1` raw values and the last `long`
    short means; `update` returns the tail probability (1 - likelihood) of each point of a
    batch, exactly as it would one point at a time.
    """

    short: int = 10
    long: int = 2000
    min_periods: int = 100
    min_sd: float = 1e-3

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.raw_tail = np.zeros(0)
        self.mean_tail = np.zeros(0)

    def update(self, raw: np.ndarray) -> np.ndarray:
        import pandas as pd
        from scipy.special import ndtr

        raw = np.nan_to_num(np.asarray(raw, dtype="float64"), nan=0.0, posinf=0.0)
        n = len(raw)
        if n == 0:
            return np.zeros(0)
        r = np.concatenate([self.raw_tail, raw])
        m_all = pd.Series(r).rolling(self.short, min_periods=1).mean().to_numpy()[len(self.raw_tail):]
        m = np.concatenate([self.mean_tail, m_all])
        roll = pd.Series(m).rolling(self.long, min_periods=self.min_periods)
        mu = roll.mean().shift(1).to_numpy()[-n:]
        sd = np.maximum(np.nan_to_num(roll.std().shift(1).to_numpy()[-n:], nan=0.0), self.min_sd)
        # The upper tail directly (not 1 - CDF), so rarities below 1e-16 keep their precision.
        out = np.nan_to_num(ndtr(-(m_all - mu) / sd), nan=1.0)
        self.raw_tail = r[-(self.short - 1):] if self.short > 1 else np.zeros(0)
        self.mean_tail = m[-self.long:]
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"raw_tail": self.raw_tail, "mean_tail": self.mean_tail}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.raw_tail = np.asarray(arrays["raw_tail"], dtype="float64")
        self.mean_tail = np.asarray(arrays["mean_tail"], dtype="float64")


def tail_to_score(tail: np.ndarray) -> np.ndarray:
    """Log scale for tail probabilities (1 - likelihood), as HTM reports likelihoods: with
    x = -log10(tail), score = x / 10 up to 0.5 (tail 1e-5, the alert level), then
    1 - 0.5 * exp(-(x - 5) / 5), which approaches 1 without reaching it: rarer stays higher, and
    no two rarities tie at 1."""
    x = -np.log10(np.clip(np.asarray(tail, dtype="float64"), 1e-300, 1.0))
    return np.where(x <= 5.0, x / 10.0, 1.0 - 0.5 * np.exp(-(x - 5.0) / 5.0))
