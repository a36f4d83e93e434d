import numpy as np
import pandas as pd
import pytest
from django.core.management import CommandError, call_command


def write_csv(path, n=400, seed=0, **cols):
    rng = np.random.default_rng(seed)
    t = pd.date_range("2024-03-01", periods=n, freq="5min", tz="UTC")
    v = 20 + np.sin(np.arange(n) / 20) + rng.normal(0, 0.2, n)
    v[300] += 6
    frame = pd.DataFrame({"timestamp": t.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "value": v.round(4), **cols})
    frame.to_csv(path, index=False)
    return frame


def run(inp, out, *extra):
    call_command("score_csv", "--detector", "robust_zscore", "--input", str(inp), "--output", str(out), *extra)
    return pd.read_csv(out)


def test_scores_every_row_in_order_and_flags_the_spike(tmp_path):
    src = write_csv(tmp_path / "in.csv")
    out = run(tmp_path / "in.csv", tmp_path / "out.csv")
    assert list(out.columns) == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert out["timestamp"].tolist() == src["timestamp"].tolist()
    assert out.loc[300, "is_anomaly"] == 1
    assert out["is_anomaly"].sum() <= 4


def test_same_input_same_output(tmp_path):
    write_csv(tmp_path / "in.csv")
    call_command("score_csv", "--detector", "ensemble", "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "a.csv"), "--seed", "1")
    call_command("score_csv", "--detector", "ensemble", "--input", str(tmp_path / "in.csv"),
                 "--output", str(tmp_path / "b.csv"), "--seed", "1")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


@pytest.mark.parametrize("detector", ["robust_zscore", "ensemble"])
def test_cutting_rows_off_the_end_never_changes_remaining_scores(tmp_path, detector):
    src = write_csv(tmp_path / "in.csv")
    src.iloc[:330].to_csv(tmp_path / "short.csv", index=False)
    args = ("--detector", detector, "--train-rows", "150")
    call_command("score_csv", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "a.csv"), *args)
    call_command("score_csv", "--input", str(tmp_path / "short.csv"), "--output", str(tmp_path / "b.csv"), *args)
    full, short = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    pd.testing.assert_frame_equal(full.iloc[:330], short)


def test_epoch_seconds_and_custom_columns(tmp_path):
    n = 200
    t = 1_700_000_000 + 60 * np.arange(n)
    pd.DataFrame({"when": t, "cpu": np.linspace(1, 2, n)}).to_csv(tmp_path / "in.csv", index=False)
    out = run(tmp_path / "in.csv", tmp_path / "out.csv", "--time-column", "when", "--value-column", "cpu")
    assert len(out) == n and out["timestamp"].tolist() == t.tolist()


def test_missing_column_is_a_clear_error(tmp_path):
    write_csv(tmp_path / "in.csv")
    with pytest.raises(CommandError, match="column 'price' not found"):
        run(tmp_path / "in.csv", tmp_path / "out.csv", "--value-column", "price")


def test_bad_time_names_the_row(tmp_path):
    src = write_csv(tmp_path / "in.csv")
    src.loc[7, "timestamp"] = "yesterday"
    src.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(CommandError, match="row 8: cannot parse time 'yesterday'"):
        run(tmp_path / "in.csv", tmp_path / "out.csv")


def test_non_numeric_value_names_the_row(tmp_path):
    src = write_csv(tmp_path / "in.csv")
    src["value"] = src["value"].astype(str)
    src.loc[12, "value"] = "n/a"
    src.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(CommandError, match="row 13: value 'n/a' is not a finite number"):
        run(tmp_path / "in.csv", tmp_path / "out.csv")
