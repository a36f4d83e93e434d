"""`manage.py score_csv`: train a detector on the head of a CSV and score every row causally.

    python manage.py score_csv --detector ensemble --input in.csv --output out.csv \
        [--time-column timestamp --value-column value] [--train-fraction 0.15 | --train-rows N] \
        [--seed 0] [--calendar XNYS]

Protocol (what production does): fit on the first rows (15 % by default), then reset the
streaming state and score *all* rows, training rows included, in one causal pass from the
start. So a row's score depends only on the training rows and the rows up to it: with
--train-rows fixed, cutting rows off the end never changes the remaining scores. The same
input and options always give the same output.

Times: ISO-8601 with or without a UTC offset (naive = UTC), or epoch seconds (a numeric
column; values above 1e11 are read as milliseconds, above 1e14 as microseconds, above 1e17 as
nanoseconds). Rows are scored in time order and written back in input order.
Output: timestamp (as given), value, anomaly_score (0..1 at full precision, so no two rows tie by
rounding; 0.5 = the learned threshold),
is_anomaly (1/0); warm-up rows get 0 and 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from django.core.management.base import BaseCommand, CommandError

from detection.detectors import DETECTORS, DetectorInputError, get_detector_class

_EPOCH_UNITS = ((1e17, "ns"), (1e14, "us"), (1e11, "ms"), (0.0, "s"))


def parse_times(raw: pd.Series) -> pd.DatetimeIndex:
    """ISO-8601 strings or epoch numbers -> UTC timestamps; CommandError names the bad row."""
    text = raw.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().all() and len(text):
        unit = next(u for limit, u in _EPOCH_UNITS if float(numeric.abs().max()) >= limit)
        return pd.DatetimeIndex(pd.to_datetime(numeric.to_numpy(dtype="float64"), unit=unit, utc=True))
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise CommandError(f"row {i + 1}: cannot parse time {raw.iloc[i]!r} (ISO-8601 or epoch seconds expected)")
    return pd.DatetimeIndex(parsed)


def parse_values(raw: pd.Series) -> np.ndarray:
    values = pd.to_numeric(raw.astype("string").str.strip(), errors="coerce").to_numpy(dtype="float64")
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        raise CommandError(f"row {i + 1}: value {raw.iloc[i]!r} is not a finite number")
    return values


def score_table(table: pd.DataFrame, *, detector: str, time_column: str, value_column: str,
                train_rows: int | None, train_fraction: float, seed: int,
                calendar: str | None = None) -> pd.DataFrame:
    """The command's work on a DataFrame of strings (testable without files)."""
    for col in (time_column, value_column):
        if col not in table.columns:
            raise CommandError(f"column {col!r} not found; the CSV has {list(table.columns)}")
    if table.empty:
        raise CommandError("the CSV has no data rows")
    ts = parse_times(table[time_column])
    values = parse_values(table[value_column])
    order = np.argsort(ts.asi8, kind="stable")  # score in time order, write in input order
    frame = pd.DataFrame({"ts": ts[order], "value": values[order]})
    n_train = train_rows if train_rows is not None else int(len(frame) * train_fraction)
    n_train = max(1, min(n_train, len(frame)))
    det = get_detector_class(detector)(seed=seed, calendar=calendar)
    try:
        det.fit(frame.iloc[:n_train])
        det.reset_state()
        res = det.score(frame)
    except (DetectorInputError, ValueError) as exc:
        raise CommandError(f"{detector}: {exc} (training rows: {n_train})") from exc
    score, flags = np.empty(len(frame)), np.empty(len(frame), dtype=bool)
    score[order], flags[order] = res.score, res.is_anomaly
    return pd.DataFrame({"timestamp": table[time_column].to_numpy(), "value": values,
                         "anomaly_score": score, "is_anomaly": flags.astype(int)})


class Command(BaseCommand):
    help = "Train a detector on the first rows of a CSV and score every row causally."

    def add_arguments(self, parser):
        parser.add_argument("--detector", default="ensemble", choices=sorted(DETECTORS))
        parser.add_argument("--input", required=True)
        parser.add_argument("--output", required=True)
        parser.add_argument("--time-column", default="timestamp")
        parser.add_argument("--value-column", default="value")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--train-fraction", type=float, default=0.15)
        group.add_argument("--train-rows", type=int, default=None)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--calendar", default=None, help='exchange calendar for market series, e.g. "XNYS"')

    def handle(self, *args, **opts):
        if opts["train_rows"] is not None and opts["train_rows"] < 1:
            raise CommandError("--train-rows must be at least 1")
        if not 0 < opts["train_fraction"] <= 1:
            raise CommandError("--train-fraction must be in (0, 1]")
        try:
            table = pd.read_csv(opts["input"], dtype=str, keep_default_na=False)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise CommandError(f"cannot read {opts['input']}: {exc}") from exc
        out = score_table(table, detector=opts["detector"], time_column=opts["time_column"],
                          value_column=opts["value_column"], train_rows=opts["train_rows"],
                          train_fraction=opts["train_fraction"], seed=opts["seed"], calendar=opts["calendar"])
        out.to_csv(opts["output"], index=False)
        self.stdout.write(f"scored {len(out)} rows, {int(out['is_anomaly'].sum())} anomalies -> {opts['output']}")
