"""The default detector for a new series: robust z-score + isolation forest + LSTM forecast.

Each component is calibrated on its own (severity 1 = its learned threshold). The ensemble
treats the component severities as its channels and calibrates each again on the causally
scored training data (the threshold is never below 1, i.e. never looser than the component's
own), then takes the worst: a point is an anomaly when any component is surprised beyond both
its own threshold and its training tail. Because every component's scale is already
"multiples of its threshold", 0.5 means the same on every series.

The ensemble keeps no buffer of its own; its streaming state is its components' states.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import DETECTORS, Detector, RawScores, get_detector_class, register
from .serialization import prefixed, unprefixed

__all__ = ["Ensemble"]

DEFAULT_COMPONENTS = {"robust_zscore": {}, "isolation_forest": {}, "lstm_forecast": {}}


@register
class Ensemble(Detector):
    name = "ensemble"
    # Severity multipliers: the z-score is the most precise component on real data; the learned
    # models add recall (bursts, odd feature combinations) but only when they are very sure.
    defaults = {"components": DEFAULT_COMPONENTS,
                "weights": {"robust_zscore": 1.0, "isolation_forest": 0.7, "lstm_forecast": 0.5}}

    def __init__(self, **params):
        super().__init__(**params)
        shared = {"seed": self.params["seed"], "calendar": self.params["calendar"]}
        self.components: dict[str, Detector] = {}
        for name, comp_params in self.params["components"].items():
            if name not in DETECTORS or name == self.name:
                raise TypeError(f"ensemble: unknown component {name!r}")
            self.components[name] = get_detector_class(name)(**{**shared, **comp_params})
        self.active = list(self.components)

    @property
    def min_history(self) -> int:
        return max((self.components[name].min_history for name in self.active), default=0)

    def reset_state(self) -> None:
        super().reset_state()
        for comp in getattr(self, "components", {}).values():
            comp.reset_state()

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
        return {"components": reports, "active": list(self.active)}

    def _raw(self, full: pd.DataFrame, start: int) -> RawScores:
        frame = full.iloc[start:]
        results = {name: self.components[name].score(frame) for name in self.active}
        weights = self.params["weights"]
        channels = {name: r.severity * float(weights.get(name, 1.0)) for name, r in results.items()}
        banded = results.get("robust_zscore") or next(iter(results.values()))

        def band(_thresholds: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return banded.expected, banded.lower, banded.upper

        def notes(i: int) -> dict:
            sev = {name: round(float(r.severity[i]), 3) for name, r in results.items()}
            top = max(sev, key=sev.get)
            return {"components": sev, "detail": results[top].explanation[i]}

        return RawScores(channels=channels, band=band, notes=notes)

    def _model_dump(self) -> tuple[dict, dict]:
        meta, arrays = {"active": list(self.active)}, {}
        for name in self.active:
            meta[name], comp_arrays = self.components[name]._dump(include_state=False)
            arrays.update(prefixed(name, comp_arrays))
        return meta, arrays

    def _model_load(self, meta: dict, arrays: dict) -> None:
        self.active = [name for name in meta["active"] if name in self.components]
        for name in self.active:
            self.components[name]._load(meta[name], unprefixed(name, arrays))

    def _state_dump(self) -> tuple[dict, dict]:
        meta, arrays = super()._state_dump()
        meta["components"] = {}
        for name in self.active:
            meta["components"][name], comp_arrays = self.components[name]._state_dump()
            arrays.update(prefixed(name, comp_arrays))
        return meta, arrays

    def _state_load(self, meta: dict, arrays: dict) -> None:
        super()._state_load(meta, arrays)
        for name in self.active:
            self.components[name]._state_load(meta["components"][name], unprefixed(name, arrays))
