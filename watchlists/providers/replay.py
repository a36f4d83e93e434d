"""File replay behind the provider interface: a CSV of bars or ticks (the demo's files, or any
export) served as history, and replayed as a live stream at N x speed."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from .. import ingest
from ..importer import open_file
from .base import Provider, ProviderError, Target, local_day_bounds_ms


class Replay(Provider):
    name = "replay"
    chunking = "month"

    def __init__(self, *, path: str | Path = "", speed: float = 60.0, **kw):
        super().__init__(**kw)
        self.path = Path(path or self.api_key)  # the "credential" of a replay is its file
        self.speed = speed

    def _frame(self) -> pd.DataFrame:
        if not self.path.is_file():
            raise ProviderError(f"Replay file {self.path.name} does not exist.", permanent=True)
        with open_file(self.path) as fh:
            return ingest.frame_from_csv(fh.read())

    def _epoch_ms(self, frame: pd.DataFrame, tz: str) -> np.ndarray:
        column = next(c for c in frame.columns if c.strip().lower() in ingest.TIME_COLUMNS)
        try:
            return ingest.parse_times(frame[column], tz) // 1000
        except (ValueError, TypeError):  # offsets differ across a DST change: parse each with its own
            parsed = pd.to_datetime(frame[column], errors="coerce", format="ISO8601", utc=True)
            return parsed.to_numpy(dtype="datetime64[ms]").astype(np.int64)

    def fetch_history(self, target: Target, start: date, end: date) -> pd.DataFrame:
        frame = self._frame()
        start_ms, end_ms = local_day_bounds_ms(start, end, target.tz)
        ms = self._epoch_ms(frame, target.tz)
        return frame.loc[(ms >= start_ms) & (ms < end_ms)].reset_index(drop=True)

    def test_connection(self) -> None:
        self._frame()

    async def stream(self, targets: list[Target], on_events, *, stop, on_reconnect=None, sleep=asyncio.sleep) -> None:
        """Sends the file row by row as provider-neutral events ({"sym", "row"}), paced by the
        gaps between their times divided by `speed`."""
        (target,) = targets
        frame = self._frame()
        ms = self._epoch_ms(frame, target.tz)
        previous = None
        for i, row in enumerate(frame.to_dict("records")):
            if stop.is_set():
                return
            if previous is not None and ms[i] > previous:
                await sleep((ms[i] - previous) / 1000 / self.speed)
            previous = ms[i]
            await on_events([{"sym": target.symbol, "row": row}])
