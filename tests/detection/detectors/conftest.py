"""Small synthetic series and small models, so the whole detector suite runs in seconds."""

import numpy as np
import pandas as pd
import pytest

# Tiny but real models: the properties tested (causality, round trips, determinism) do not
# depend on size.
SMALL = {
    "robust_zscore": {"window": 60, "min_periods": 20},
    "isolation_forest": {"n_estimators": 20, "max_samples": 64},
    "lstm_forecast": {"seq_len": 8, "hidden": 6, "epochs": 1, "batch_size": 64},
    "context_ose": {"max_contexts": 20_000},
}
# Every member, and the likelihood path that metric series take (the test bars would otherwise
# select the market mode, which keeps the z-score alone).
SMALL["ensemble"] = {"components": {**{k: SMALL[k] for k in ("robust_zscore", "isolation_forest", "lstm_forecast")},
                                    "context_ose": {"rest_period": 0}},
                     "market_mode": False}
SMALL["market_relative"] = {"inner": "robust_zscore", "inner_params": SMALL["robust_zscore"]}
ALL_DETECTORS = list(SMALL)


def make_bars(n: int = 600, seed: int = 0, start: str = "2013-10-07 13:30") -> pd.DataFrame:
    """Regular-session-like 1-minute bars with a benchmark column (for market_relative)."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    bench = 100 * np.exp(np.cumsum(rng.normal(0, 5e-4, n)))
    close = 50 * np.exp(np.cumsum(rng.normal(0, 8e-4, n)) + 0.8 * np.log(bench / 100))
    close[n // 2] *= 1.03  # one spike
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pd.DataFrame({
        "ts": ts, "value": close, "open": open_, "high": np.maximum(open_, close) * 1.0005,
        "low": np.minimum(open_, close) * 0.9995, "close": close,
        "volume": rng.lognormal(8, 0.5, n).round(), "benchmark": bench,
    })


@pytest.fixture
def bars() -> pd.DataFrame:
    return make_bars()


def build(name: str, **extra):
    from detection.detectors import get_detector_class

    return get_detector_class(name)(**{**SMALL[name], **extra})
