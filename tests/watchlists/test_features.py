import numpy as np
import pandas as pd
import pytest

from tests.detection.detectors.conftest import make_bars
from watchlists.features import FEATURE_COLUMNS, bars_from_ticks, compute_features


def test_changing_future_bars_never_moves_past_features():
    bars = make_bars(300).assign(trade_count=50.0)
    base = compute_features(bars)
    changed = bars.copy()
    changed.loc[200:, ["open", "high", "low", "close"]] *= 2
    changed.loc[200:, ["volume", "trade_count"]] *= 7
    other = compute_features(changed)
    pd.testing.assert_frame_equal(base.iloc[:200], other.iloc[:200])
    assert not base.iloc[200:].equals(other.iloc[200:])


def test_columns_and_values_on_a_hand_checked_case():
    ts = pd.date_range("2024-01-02 14:30", periods=3, freq="1min", tz="UTC")
    bars = pd.DataFrame({"open": [10, 10, 11], "high": [10, 11, 12], "low": [10, 10, 11],
                         "close": [10, 11, 12], "volume": [100, 300, 0], "trade_count": [2, 3, 0]}, index=ts)
    f = compute_features(bars)
    assert list(f.columns) == list(FEATURE_COLUMNS)
    typical = np.array([10, 32 / 3, 35 / 3])
    assert f["vwap_5m"].iloc[1] == pytest.approx((typical[0] * 100 + typical[1] * 300) / 400)
    assert f["volume_5m"].tolist() == [100, 400, 400]
    assert f["volume_ratio"].iloc[1] == pytest.approx(3.0)  # against the bars before it
    assert f["price_momentum_1m"].iloc[1] == pytest.approx(0.1)
    assert f["avg_trade_size_1m"].iloc[1] == pytest.approx(100)
    assert f["avg_trade_size_1m"].iloc[2] == 0


def test_clock_windows_respect_gaps():
    ts = pd.DatetimeIndex(["2024-01-02 09:00", "2024-01-02 09:10", "2024-01-02 09:11"], tz="UTC")
    bars = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": [5.0, 7.0, 9.0]}, index=ts)
    assert compute_features(bars)["volume_5m"].tolist() == [5, 7, 16]


def test_ticks_aggregate_to_bars_without_suspicious_prints():
    ticks = pd.DataFrame({
        "timestamp": ["2013-10-07T09:30:00.100-04:00", "2013-10-07T09:30:20-04:00",
                      "2013-10-07T09:30:30-04:00", "2013-10-07T09:31:05-04:00"],
        "price": [100.0, 101.0, 5.0, 102.0], "size": [10, 20, 30, 40], "suspicious": [0, 0, 1, 0]})
    bars = bars_from_ticks(ticks)
    assert bars["high"].tolist() == [101.0, 102.0]
    assert bars["low"].tolist() == [100.0, 102.0]
    assert bars["volume"].tolist() == [30.0, 40.0]
    assert bars["trade_count"].tolist() == [2.0, 1.0]
