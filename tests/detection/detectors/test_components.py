"""Unit tests of the pieces under the detectors: forest export, seasonality, splits, drift."""

import numpy as np
import pandas as pd
import pytest

from detection.detectors.drift import drift_level, drifted_features, psi, psi_table
from detection.detectors.forest_arrays import export_forest, forest_scores
from detection.detectors.seasonality import MARKET_BUCKETS, bucket_ids

from .conftest import build, make_bars


def test_exported_forest_matches_sklearn_exactly():
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(0)
    X = rng.standard_t(3, size=(2000, 6))
    model = IsolationForest(n_estimators=30, max_samples=128, random_state=0).fit(X)
    Y = np.vstack([rng.standard_t(3, size=(500, 6)), X[:50]])
    np.testing.assert_allclose(forest_scores(export_forest(model), Y), model.score_samples(Y), rtol=1e-12)


def test_market_buckets_follow_the_session_not_the_clock():
    # Regular open, a DST-shifted open, and the half-day close of 2013-11-29 (13:00 New York).
    ts = pd.DatetimeIndex(["2013-10-07 13:30", "2013-12-02 14:30", "2013-11-29 17:59",
                           "2013-10-07 19:59", "2013-10-07 13:31"], tz="UTC")
    b = bucket_ids(pd.Series(ts), "market", 60.0, "XNYS")
    # Row 0 is the day's first bar; the DST open is an open; the half-day and normal closes agree.
    assert b[2] == b[3]
    assert b[4] != b[3] and b.max() < MARKET_BUCKETS


def test_daily_series_have_no_seasonality():
    from detection.detectors.seasonality import choose_mode

    assert choose_mode("auto", "XNYS", 86_400, 1e9) == "none"
    assert choose_mode("auto", None, 300, 10 * 86_400) == "time_of_day"


def test_unadjusted_split_is_not_an_anomaly_when_split_aware():
    bars = make_bars(1200, start="2014-06-05 13:30")
    bars["ts"] = pd.date_range("2014-06-02", periods=len(bars), freq="1D", tz="UTC")
    bars.loc[900:, ["value", "close", "open", "high", "low"]] /= 7  # a 7:1 split
    aware = build("robust_zscore", calendar="XNYS")
    aware.fit(bars.iloc[:600])
    aware.reset_state()
    res = aware.score(bars)
    assert not res.is_anomaly[899:902].any()
    assert res.explanation[900].get("split_adjusted") in (None, True)
    naive = build("robust_zscore", split_aware=False)
    naive.fit(bars.iloc[:600])
    naive.reset_state()
    assert naive.score(bars).is_anomaly[900]


def test_known_split_factors_adjust_the_return():
    bars = make_bars(800)
    bars["ts"] = pd.date_range("2014-01-01", periods=len(bars), freq="1D", tz="UTC")
    bars.loc[700:, "value"] /= 7
    split_day = bars.loc[700, "ts"].tz_convert("America/New_York").strftime("%Y-%m-%d")
    det = build("robust_zscore", split_aware=False, transform="logret", split_factors=[[split_day, 7]])
    det.fit(bars.iloc[:400])
    det.reset_state()
    assert not det.score(bars).is_anomaly[700]


def test_market_relative_ignores_a_market_wide_move():
    bars = make_bars(800)
    bars.loc[600:, "benchmark"] *= 0.97  # the market drops 3 %
    bars.loc[600:, "value"] *= 0.97 ** 0.8  # the stock moves with it (beta 0.8)
    plain = build("robust_zscore", transform="logret")
    plain.fit(bars.iloc[:300])
    plain.reset_state()
    assert plain.score(bars).is_anomaly[600]
    rel = build("market_relative")
    report = rel.fit(bars.iloc[:300])
    rel.reset_state()
    assert 0.5 < report["beta"] < 1.1
    assert not rel.score(bars).is_anomaly[600]


def test_psi_is_zero_for_identical_and_large_for_shifted():
    rng = np.random.default_rng(0)
    a = rng.normal(size=5000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-9)
    assert psi(a, rng.normal(size=5000)) < 0.05
    assert psi(a, rng.normal(1.0, 1, size=5000)) > 0.25
    table = psi_table(pd.DataFrame({"x": a, "y": a}), pd.DataFrame({"x": a + 2, "y": a}))
    assert drifted_features(table) == ["x"]
    assert drift_level(table["x"]) == "major" and drift_level(table["y"]) == "stable"
