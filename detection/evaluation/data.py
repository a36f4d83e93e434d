"""The evaluation's real series: minute, hourly and daily bars and SPY ticks aggregated to bars.

Reads ../shared/data when present, else the repository's demo copies (which have fewer files;
missing ones are skipped). Every series is a frame with ts (UTC), value (= close), OHLCV and
sometimes trade_count, plus the calendar name, as the detectors expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from watchlists.features import bars_from_ticks

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
DEMO = REPO / "watchlists" / "demo_data"

__all__ = ["Series", "load_all"]


@dataclass
class Series:
    name: str
    frame: pd.DataFrame
    calendar: str | None = "XNYS"


def _path(relative: str) -> Path | None:
    for root in (SHARED, DEMO):
        if (root / relative).exists():
            return root / relative
    return None


def _bars(relative: str, start: str | None = None, end: str | None = None) -> pd.DataFrame | None:
    path = _path(relative)
    if path is None:
        return None
    raw = pd.read_csv(path)
    ts = pd.to_datetime(raw["timestamp"], utc=True)
    keep = pd.Series(True, index=raw.index)
    if start:
        keep &= ts >= pd.Timestamp(start, tz="UTC")
    if end:
        keep &= ts < pd.Timestamp(end, tz="UTC")
    frame = raw.loc[keep, ["open", "high", "low", "close", "volume"]].astype("float64")
    frame.insert(0, "ts", ts[keep])
    frame["value"] = frame["close"]
    return frame.reset_index(drop=True)


def _tick_bars(relative: str, freq: str) -> pd.DataFrame | None:
    path = _path(relative)
    if path is None:
        return None
    bars = bars_from_ticks(pd.read_csv(path), freq=freq).reset_index()
    bars["value"] = bars["close"]
    return bars


def load_all(quick: bool = False) -> list[Series]:
    """The evaluation set (quick: one series per frequency, for smoke runs)."""
    specs = [
        ("SPY.minute", lambda: _bars("minute/SPY.csv", end="2013-10-12")),
        ("IBM.minute", lambda: _bars("minute/IBM.csv")),
        ("BAC.minute", lambda: _bars("minute/BAC.csv")),
        ("AIG.minute", lambda: _bars("minute/AIG.csv")),
        ("AAPL.minute.split", lambda: _bars("minute/AAPL.csv")),
        ("SPY.ticks.30s", lambda: _tick_bars("ticks/SPY_trades_20131007.csv.gz", "30s")),
        ("SPY.hourly", lambda: _bars("hourly/SPY.csv.gz", "2017-01-01", "2019-07-01")),
        ("IBM.hourly", lambda: _bars("hourly/IBM.csv.gz", "2017-01-01", "2019-07-01")),
        ("BAC.hourly", lambda: _bars("hourly/BAC.csv.gz", "2017-01-01", "2019-07-01")),
        ("AAPL.hourly", lambda: _bars("hourly/AAPL.csv.gz", "2017-01-01", "2019-07-01")),
        ("SPY.daily", lambda: _bars("daily/SPY.csv", "2004-01-01")),
        ("AAPL.daily.splits", lambda: _bars("daily/AAPL.csv", "2004-01-01")),
    ]
    if quick:
        specs = [specs[0], specs[6], specs[10]]
    out = []
    for name, load in specs:
        frame = load()
        if frame is not None and len(frame) > 500:
            out.append(Series(name, frame))
    return out
