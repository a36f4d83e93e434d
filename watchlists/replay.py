"""Replays a CSV through the real ingest path at N x real time (or as fast as possible).

Times can be shifted so the first replayed point lands "now": the demo then looks live. Each
batch is an ordinary ingest (validation, storage, live feed, detection), keyed by the replay run
and its position, so a retried batch is not stored twice."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from accounts.tenancy import Actor

from . import ingest, services
from .importer import open_file
from .models import Series
from .store.timeconv import to_us
from .store.writer import Points

MAX_BATCH = 5000


@dataclass
class ReplayReport:
    points: int = 0
    batches: int = 0
    seconds: float = 0.0


def load(series: Series, path: Path, start: datetime | None = None) -> Points:
    with open_file(path) as fh:
        frame = pd.read_csv(fh, dtype={c: str for c in ingest.TIME_COLUMNS})
    points = ingest.validate(frame, series.kind, services.series_timezone(series))
    order = np.argsort(points.ts, kind="stable")
    keep = order[points.ts[order] >= to_us(start)] if start else order
    return Points(points.kind, points.ts[keep], {c: v[keep] for c, v in points.values.items()},
                  points.trade_id[keep] if points.trade_id is not None else None)


TIME_MODES = ("keep", "shift", "wallclock")


def replay_times(ts: np.ndarray, mode: str, speed: float | None, now_us: int) -> np.ndarray:
    """The times to store: the file's own ("keep"), moved so the first point is now ("shift"), or
    also compressed by `speed` so each point is stored at the wall-clock moment it is sent
    ("wallclock": a live demo whose chart runs on the real clock)."""
    if mode == "keep":
        return ts
    if mode == "wallclock" and speed:
        return now_us + ((ts - ts[0]) / speed).astype(np.int64)
    return ts + (now_us - int(ts[0]))


def replay(*, actor: Actor, series: Series, points: Points, speed: float | None, time_mode: str = "shift",
           tick_seconds: float = 0.2, duration: float | None = None, stop: Callable[[], bool] = lambda: False,
           progress: Callable[[int], None] | None = None) -> ReplayReport:
    """Sends `points` in time order. speed=None means as fast as possible; else `speed` seconds of
    data per wall-clock second, in batches every `tick_seconds`."""
    report, run = ReplayReport(), uuid.uuid4().hex[:12]
    if not len(points):
        return report
    source = points.ts
    ts = replay_times(source, time_mode, speed, int(time.time() * 1e6))
    began, sent = time.monotonic(), 0
    while sent < len(ts) and not stop():
        elapsed = time.monotonic() - began
        if duration is not None and elapsed > duration:
            break
        if speed is None:
            upto = min(len(ts), sent + MAX_BATCH)
        else:
            due = source[0] + int(elapsed * speed * 1e6)
            upto = min(int(np.searchsorted(source, due, side="right")), sent + MAX_BATCH)
        if upto > sent:
            batch = Points(points.kind, ts[sent:upto], {c: v[sent:upto] for c, v in points.values.items()},
                           points.trade_id[sent:upto] if points.trade_id is not None else None)
            services.ingest(actor=actor, batches=[(series, batch)], idempotency_key=f"replay:{run}:{sent}")
            report.batches += 1
            if progress:
                progress(upto - sent)
            sent = upto
        elif speed is not None:
            time.sleep(tick_seconds)
    report.points, report.seconds = sent, time.monotonic() - began
    return report
