"""AnomalyHub's learned anomaly detectors.

    from detection.detectors import get_detector_class, DETECTORS, ArtifactError
    det = get_detector_class("ensemble")(**params)
    report = det.fit(frame)         # validation metrics / thresholds
    res = det.score(frame)          # causal; advances the streaming state
    det.status()                    # {"state": "ready" | "warming_up", "needs_points": n}
    blob = det.to_bytes(); det2 = get_detector_class("ensemble").from_bytes(blob)

Contracts (input columns, causality, warm-up, score meaning) are in `base.py`. torch and
scikit-learn are imported lazily inside the detectors that need them, so importing this package
is cheap for the web process.
"""

from . import context_ose, ensemble, isolation_forest, lstm_forecast, market_relative, robust_zscore  # noqa: F401  (registration)
from .base import (
    DETECTORS,
    Detector,
    DetectorInputError,
    ScoreResult,
    as_frame,
    get_detector_class,
    load_detector,
    register,
)
from .serialization import ArtifactError

__all__ = [
    "DETECTORS", "ArtifactError", "Detector", "DetectorInputError", "ScoreResult", "as_frame",
    "get_detector_class", "load_detector", "register",
]
