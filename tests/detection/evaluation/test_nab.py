"""make eval's NAB scoring on a tiny corpus laid out as NAB's (data/, labels/, config/)."""

import json

import numpy as np
import pandas as pd

from detection.evaluation.nab import evaluate_nab

PROFILES = {"standard": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 1.0}},
            "reward_low_FP_rate": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.22, "fnWeight": 1.0}},
            "reward_low_FN_rate": {"CostMatrix": {"tpWeight": 1.0, "fpWeight": 0.11, "fnWeight": 2.0}}}


def _corpus(tmp_path, spike: float, noise: float = 0.1):
    ts = pd.date_range("2024-01-01", periods=1000, freq="5min")
    values = 10 + np.random.default_rng(0).normal(0, noise, 1000)
    values[700] += spike
    (tmp_path / "data" / "cat").mkdir(parents=True)
    pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(
        tmp_path / "data" / "cat" / "one.csv", index=False)
    window = [[str(ts[690]) + ".000000", str(ts[720]) + ".000000"]]
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps({"cat/one.csv": window}))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "profiles.json").write_text(json.dumps(PROFILES))
    return tmp_path


def test_a_detection_early_in_the_window_scores_and_per_category_follows(tmp_path):
    report = evaluate_nab(_corpus(tmp_path, spike=5.0), "robust_zscore")
    # Found a third into the window, no false positive: NAB's sigmoid gives most of the credit.
    assert 50 < report["standard"]["score"] <= 100
    assert report["standard"]["categories"] == {"cat": report["standard"]["score"]}
    assert set(report) == {"standard", "low FP", "low FN"}


def test_a_detector_that_flags_nothing_scores_zero(tmp_path):
    # A constant series: every score is 0, so the best threshold flags nothing (NAB's null).
    report = evaluate_nab(_corpus(tmp_path, spike=0.0, noise=0.0), "robust_zscore")
    assert report["standard"]["score"] == 0.0 and report["low FN"]["score"] == 0.0
