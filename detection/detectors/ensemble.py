"""The default detector for a new series: calibrated evidence, combined, one alert per event.

1. Members (default: the robust z-score; the context detector, the isolation forest and the
   LSTM can be added through `components`) score the point as usual; their severities are raw
   statistics on incomparable scales. The context detector (CAD OSE) is not a default member:
   it is pure Python (a few hundred points/s) and, with the two checks of step 3, the z-score
   alone scored higher on NAB; the forest (26.1 standard alone) and the LSTM (0.0 alone) are
   far below the z-score on NAB as a whole, and stay off until one wins a NAB category.
2. Calibration: each member's severity goes through its own `AnomalyLikelihood` (the rarity of
   its last `likelihood_short` = 20 values' mean against this series' history of such means),
   so every member speaks in the same unit and a regime that persists stops being rare.
3. Two checks on single points, which a 20-point mean dilutes:
   - point: the z-score's own severity, as a tail that reaches the alert level (1e-5) at
     `point_severity` = 12 times its learned threshold (a huge spike alerts at once);
   - range (HTM's "spatial anomaly"): a value beyond the lowest / highest the series has shown
     (training included), by more than `range_tolerance` = 2 % of that range, gets the tail
     `range_tail` = 10**-4.9 (a score of 0.49, just under the alert level), smaller by a factor
     10 per 10 ranges (`range_slope`) of excess. A record of ordinary noise does not page
     anyone (noise keeps setting them, ever more rarely) but ranks above ordinary noise, which
     is what NAB's threshold optimisation uses; a value a whole range beyond the old extremes
     alerts at once.
4. Combination: Tippett's method, the smallest tail (1 - likelihood): every piece of evidence is
   heard on the same calibrated scale and none can saturate the result. (Fisher's method scored
   lower on NAB: moderate surprises of the members are correlated.) The result is reported on
   HTM's log scale (`tail_to_score`): 0.5 = tail 10**-5.
5. One alert per event: after a point at or above the alert score (0.5), the next
   `rest_period` = 30 points are reported with score 0 (the event is already being reported);
   the explanation keeps the unsuppressed score.

Adaptation to a level shift: the shift alerts once; the refractory period covers the next 30
points, and the z-score's trailing median (240 points) takes half its window to reach the new
level, during which the likelihood history absorbs the raised severities. The documented
adaptation time is therefore 120 points (half the z-score's window); the pipeline test checks
one alert over the 2,000 points after a 20-sigma shift.

Market series (a calendar, or OHLC bars) score with the point member alone (the robust z-score
at its own learned threshold), without refractory or the range check: on the injected market
corpus the likelihood members added false alarms and no recall, a one-bar price spike is
exactly what a market user must hear about, and a price breaking its range is ordinary for a
trending instrument. This is decided from the data's type at fit time (`market_mode`), never
from labels.

The ensemble keeps no row buffer of its own; its streaming state is its members' states, the
likelihood histories, the range seen so far and the refractory countdown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import DETECTORS, Detector, RawScores, get_detector_class, register
from .calibration import AnomalyLikelihood, TailCalibrator, tail_to_score
from .serialization import prefixed, unprefixed

__all__ = ["Ensemble", "refractory"]

DEFAULT_COMPONENTS = {"robust_zscore": {}}
# Market bars: no refractory; a 3-bar one fragmented flag chains that the event merge joins
# (24 false-positive events against 22 on the injected corpus).
MARKET_REST = 0


def refractory(score: np.ndarray, alert: float, rest: int, quiet: int) -> tuple[np.ndarray, int]:
    """Zero the `rest` points after each alert; `quiet` = points still to silence from before.
    Returns the reported scores and the countdown left for the next batch."""
    out = score.copy()
    for i, s in enumerate(score.tolist()):
        if quiet > 0:
            out[i] = 0.0
            quiet -= 1
        elif s >= alert:
            quiet = rest
    return out, quiet


@register
class Ensemble(Detector):
    name = "ensemble"
    defaults = {"components": DEFAULT_COMPONENTS, "likelihood_short": 20, "likelihood_long": 2000,
                "rest_period": 30, "max_rest_period": 150, "point_member": "robust_zscore",
                "point_severity": 12.0, "range_check": True, "range_tolerance": 0.02,
                "range_tail": 10 ** -4.9, "range_slope": 0.1, "market_mode": "auto"}

    def __init__(self, **params):
        super().__init__(**params)
        shared = {"seed": self.params["seed"], "calendar": self.params["calendar"]}
        self.components: dict[str, Detector] = {}
        for name, comp_params in self.params["components"].items():
            if name not in DETECTORS or name == self.name:
                raise TypeError(f"ensemble: unknown component {name!r}")
            self.components[name] = get_detector_class(name)(**{**shared, **comp_params})
        self.active = list(self.components)
        self.rest = 30
        self.market = False
        self.reset_state()

    @property
    def min_history(self) -> int:
        return max((self.components[name].min_history for name in self.active), default=0)

    def reset_state(self) -> None:
        super().reset_state()
        for comp in getattr(self, "components", {}).values():
            comp.reset_state()
        p = self.params
        self.likelihoods = {name: AnomalyLikelihood(short=int(p["likelihood_short"]), long=int(p["likelihood_long"]))
                            for name in getattr(self, "components", {})}
        self.quiet = 0
        self.seen_range = np.array([np.nan, np.nan])  # lowest and highest value seen so far

    def _fit(self, frame: pd.DataFrame) -> dict:
        """Fit every component; one that cannot learn from this little history (the LSTM
        needs seq_len + 20 points) is left out and reported, rather than failing the series."""
        cal = self.params["calendar"]
        reports, self.active = {}, []
        for name, comp in self.components.items():
            comp.params["calendar"] = comp.params["calendar"] or cal
            try:
                reports[name] = comp.fit(frame)
                self.active.append(name)
            except ValueError as exc:
                reports[name] = {"skipped": str(exc)}
        if not self.active:
            raise ValueError("no component could be trained on this history")
        p = self.params
        auto = int(min(int(p["max_rest_period"]), max(5, len(frame) // 5)))
        self.rest = auto if p["rest_period"] == "auto" else int(p["rest_period"])
        self.market = self._is_market(frame)
        if self.market and p["point_member"] in self.active:
            self.active = [p["point_member"]]
            self.rest = MARKET_REST
        # The combined channel is already a score with its alert level at 0.5.
        self.calibrators["combined"] = TailCalibrator(threshold=0.5)
        return {"components": reports, "active": list(self.active), "rest_period": self.rest}

    def score_from_severity(self, severity: np.ndarray) -> np.ndarray:
        return np.clip(severity * 0.5, 0.0, 1.0)

    def _raw(self, full: pd.DataFrame, start: int) -> RawScores:
        frame = full.iloc[start:]
        results = {name: self.components[name].score(frame) for name in self.active}
        labels = [] if self.market else list(results)
        tails = np.ones((len(labels), len(frame)))
        for k, name in enumerate(labels):
            # Warm-up rows (always a prefix) carry no opinion: they stay out of the history.
            ready = ~results[name].warming_up
            tails[k, ready] = self.likelihoods[name].update(np.log1p(results[name].severity[ready]))
        extra = {"point": self._point_tail(results, len(frame))}
        if self.params["range_check"] and not self.market:
            extra["range"] = self._range_tail(frame["value"].to_numpy(dtype="float64"))
        for label, tail in extra.items():
            if tail is not None:
                labels.append(label)
                tails = np.vstack([tails, tail])
        combined = tail_to_score(tails.min(axis=0)) if len(tails) else np.zeros(len(frame))
        reported, self.quiet = refractory(combined, 0.5, self.rest, self.quiet)
        banded = results.get("robust_zscore") or next(iter(results.values()))

        def band(_thresholds: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return banded.expected, banded.lower, banded.upper

        def notes(i: int) -> dict:
            members = {label: round(float(tail_to_score(tails[k, i])), 3) for k, label in enumerate(labels)}
            top = max(results, key=lambda m: members.get(m, 0.0))
            return {"components": members, "unsuppressed_score": round(float(combined[i]), 4),
                    "detail": results[top].explanation[i]}

        return RawScores(channels={"combined": reported}, band=band, notes=notes)

    def _is_market(self, frame: pd.DataFrame) -> bool:
        mode = self.params["market_mode"]
        if mode != "auto":
            return bool(mode)
        return bool(self.params["calendar"]) or {"open", "high", "low"} <= set(frame.columns)

    def _range_tail(self, x: np.ndarray) -> np.ndarray:
        """HTM's "spatial anomaly" on NAB: a value beyond everything this series has shown so
        far (fit replays the training rows, so live that is training plus stream), by more than
        `range_tolerance` of that range, is rare in its own right however its recent average
        looks. Its tail is `range_tail` (a score just under the alert level) times
        10**-(`range_slope` x the excess in ranges): a record of ordinary noise does not alert,
        a value a whole range beyond the old extremes (a real break) does. Else 1. A constant
        series has no range yet, so its first move is left to the members."""
        lo0, hi0 = self.seen_range
        finite = np.where(np.isfinite(x), x, np.nan)
        hi = np.fmax.accumulate(np.concatenate([[hi0], finite]))
        lo = np.fmin.accumulate(np.concatenate([[lo0], finite]))
        prev_hi, prev_lo = hi[:-1], lo[:-1]
        span = prev_hi - prev_lo
        self.seen_range = np.array([lo[-1], hi[-1]])
        with np.errstate(invalid="ignore", divide="ignore"):
            excess = np.fmax(finite - prev_hi, prev_lo - finite) / span - float(self.params["range_tolerance"])
            beyond = (span > 0) & (excess > 0)
        excess = np.where(beyond, excess, 0.0)
        tail = float(self.params["range_tail"]) * np.power(10.0, -float(self.params["range_slope"]) * excess)
        return np.where(beyond, tail, 1.0)

    def _point_tail(self, results: dict, n: int) -> np.ndarray | None:
        """A single extreme point (a spike) barely moves a 10-point average, so the point member's
        own severity also counts, as a tail that reaches the alert level (1e-5) at
        `point_severity` times its learned threshold (the likelihood's "spatial" check)."""
        r = results.get(self.params["point_member"])
        at = 1.0 if self.market else float(self.params["point_severity"])
        if r is None or not at:
            return None
        sev = np.where(r.warming_up, 0.0, np.nan_to_num(r.severity))
        return np.power(10.0, -5.0 * sev / at)

    def _model_dump(self) -> tuple[dict, dict]:
        meta, arrays = {"active": list(self.active), "rest": self.rest, "market": self.market}, {}
        for name in self.active:
            meta[name], comp_arrays = self.components[name]._dump(include_state=False)
            arrays.update(prefixed(name, comp_arrays))
        return meta, arrays

    def _model_load(self, meta: dict, arrays: dict) -> None:
        self.active = [name for name in meta["active"] if name in self.components]
        self.rest = int(meta["rest"])
        self.market = bool(meta.get("market", False))
        for name in self.active:
            self.components[name]._load(meta[name], unprefixed(name, arrays))

    def _state_dump(self) -> tuple[dict, dict]:
        meta, arrays = super()._state_dump()
        meta["components"] = {}
        meta["quiet"] = self.quiet
        arrays["seen_range"] = self.seen_range
        for name in self.active:
            meta["components"][name], comp_arrays = self.components[name]._state_dump()
            arrays.update(prefixed(name, comp_arrays))
            arrays.update(prefixed(f"likelihood.{name}", self.likelihoods[name].state()))
        return meta, arrays

    def _state_load(self, meta: dict, arrays: dict) -> None:
        super()._state_load(meta, arrays)
        self.quiet = int(meta["quiet"])
        # A state saved before the range check existed starts it unknown: it learns from the stream.
        self.seen_range = np.asarray(arrays.get("seen_range", [np.nan, np.nan]), dtype="float64")
        for name in self.active:
            self.components[name]._state_load(meta["components"][name], unprefixed(name, arrays))
            self.likelihoods[name].load_state(unprefixed(f"likelihood.{name}", arrays))
