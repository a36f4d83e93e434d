"""Detector hot paths next to the raw library calls they replace, measured in the same run.

- single-point scoring, warm model: `IsolationForestDetector.isolation` on one feature row
  (numpy tree arrays) vs `IsolationForest.score_samples` on the same row; the LSTM's
  `predict` on one window vs the bare torch module forward (and the full `det.score` of one
  new bar through the streaming path, for both, as extra rows).
- batch scoring: exported forest vs `score_samples` on the same 100k rows.
- training `lstm_forecast` on ~25k one-minute bars (three months of regular sessions),
  synthesised by stitching the real minute bars' returns end to end.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .harness import Row, data_path, median_time, percentile

N_SINGLE = 300
N_BATCH = 100_000


def _latencies(fn, n: int = N_SINGLE) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _one_bar_row(name: str, det, bar: pd.DataFrame) -> Row:
    """The whole streaming path for one new bar: restore the state blob, score, as the pipeline
    does per series (includes input validation and trailing-window features over the buffer)."""
    state = det.state_to_bytes()

    def one_bar():
        det.load_state(state)
        det.score(bar)

    lat = _latencies(one_bar, 100)
    return Row(name, percentile(lat, 99), "ms", higher_is_better=False, target="info",
               extra={"p50": percentile(lat, 50)})


def _minute_bars() -> pd.DataFrame:
    frames = []
    for sym in ("SPY", "IBM", "BAC", "AIG"):
        raw = pd.read_csv(data_path(f"minute/{sym}.csv"))
        raw = raw[raw["timestamp"] < "2013-10-12"]
        frames.append(raw)
    return pd.concat(frames, ignore_index=True)


def _stitched_series(n: int) -> pd.DataFrame:
    """~n regular-session minute bars: real minute log-returns, stitched and repeated."""
    raw = _minute_bars()
    r = np.diff(np.log(raw["close"].to_numpy()))
    r = r[np.abs(r) < 0.02]  # drop the joins between symbols
    reps = int(np.ceil(n / len(r)))
    r = np.tile(r, reps)[:n]
    ts = pd.date_range("2013-10-07 13:30", periods=n, freq="1min", tz="UTC")
    close = 100 * np.exp(np.cumsum(r))
    return pd.DataFrame({"ts": ts, "value": close})


def _bars_frame(n: int) -> pd.DataFrame:
    s = _stitched_series(n)
    rng = np.random.default_rng(0)
    return s.assign(open=s["value"].shift(1).fillna(s["value"].iloc[0]), high=s["value"] * 1.0003,
                    low=s["value"] * 0.9997, close=s["value"], volume=rng.lognormal(9, 0.6, n).round())


def _forest_rows(det, frame, rows) -> list[Row]:
    from sklearn.ensemble import IsolationForest

    X = det.features(frame).to_numpy(dtype="float64")
    model = IsolationForest(n_estimators=det.params["n_estimators"], max_samples=256,
                            random_state=0).fit(X[: len(X) // 2].astype(np.float32))
    # Same fitted forest on both sides: re-export so the numpy path evaluates `model` itself.
    from detection.detectors.forest_arrays import export_forest

    det.forest = export_forest(model)
    one = X[-1:]
    ours = _latencies(lambda: det.isolation(one))
    theirs = _latencies(lambda: model.score_samples(one))
    rows.append(Row("isolation_forest single point p99", percentile(ours, 99), "ms",
                    "IsolationForest.score_samples p99", percentile(theirs, 99), higher_is_better=False,
                    target="<= 5 ms", extra={"p50": percentile(ours, 50), "baseline_p50": percentile(theirs, 50)}))
    batch = np.resize(X, (N_BATCH, X.shape[1]))
    t_ours = median_time(lambda: det.isolation(batch), repeat=3)
    t_theirs = median_time(lambda: model.score_samples(batch), repeat=3)
    rows.append(Row("isolation_forest batch throughput", N_BATCH / t_ours, "points/s",
                    "IsolationForest.score_samples", N_BATCH / t_theirs, target=">= 200,000 points/s"))
    return rows


N_ENSEMBLE = 100_000


def _ensemble_rows(rows: list[Row]) -> None:
    """The default ensemble (robust z + likelihood + point and range checks + refractory): one
    new point through the streaming path, and batch throughput against its member alone."""
    from detection.detectors import get_detector_class

    # A metric series (no calendar, no bars): the path NAB and ordinary metrics take.
    series = _stitched_series(N_ENSEMBLE + 3000)
    fit, batch = series.iloc[:3000], series.iloc[3000:]
    for name in ("ensemble", "robust_zscore"):
        det = get_detector_class(name)()
        det.fit(fit)

        def whole(det=det):
            det.reset_state()
            det.score(batch)

        rows.append(Row(f"{name} batch throughput ({N_ENSEMBLE:,} points)", N_ENSEMBLE / median_time(whole, repeat=3),
                        "points/s", target=">= 100,000 points/s"))
    ens = rows[-2]
    ens.baseline_name, ens.baseline_value = "robust_zscore alone", rows[-1].value
    det = get_detector_class("ensemble")()
    det.fit(fit)
    det.score(batch.iloc[:2000])
    rows.append(_one_bar_row("ensemble det.score(1 point) incl. state p99", det, batch.iloc[2000:2001]))


def run() -> list[Row]:
    from detection.detectors import get_detector_class

    rows: list[Row] = []
    _ensemble_rows(rows)
    frame = _bars_frame(6000)
    iso = get_detector_class("isolation_forest")(calendar="XNYS")
    iso.fit(frame.iloc[:5000])
    tail = frame.iloc[5000:5999]
    iso.score(tail)
    rows.append(_one_bar_row("isolation_forest det.score(1 bar) incl. features p99", iso, frame.iloc[5999:6000]))
    _forest_rows(iso, frame, rows)

    # LSTM: training time on three months of minute bars, then single-point latency.
    import torch

    n_train = 3 * 21 * 390
    series = _stitched_series(n_train + 500)
    lstm = get_detector_class("lstm_forecast")(calendar="XNYS")
    t0 = time.perf_counter()
    report = lstm.fit(series.iloc[:n_train])
    train_s = time.perf_counter() - t0
    rows.append(Row("lstm_forecast training on 3 months of 1-min bars", train_s, "s", higher_is_better=False,
                    target="< 120 s", extra={"bars": n_train, "epochs": lstm.params["epochs"],
                                             "train_windows": report["train_windows"]}))
    L = lstm.params["seq_len"]
    window = np.random.default_rng(0).normal(size=(1, L))
    tensor = torch.from_numpy(window.astype(np.float32)).unsqueeze(-1)

    def bare():
        with torch.inference_mode():
            lstm.module(tensor)

    ours = _latencies(lambda: lstm.predict(window))
    theirs = _latencies(bare)
    rows.append(Row("lstm_forecast single point p99", percentile(ours, 99), "ms", "torch module forward p99",
                    percentile(theirs, 99), higher_is_better=False, target="<= 5 ms",
                    extra={"p50": percentile(ours, 50), "baseline_p50": percentile(theirs, 50)}))
    lstm.score(series.iloc[n_train: n_train + 499])
    rows.append(_one_bar_row("lstm_forecast det.score(1 bar) p99", lstm, series.iloc[n_train + 499:]))
    return rows
