"""Replays of the bundled demo data started from the series page, with progress in the cache.

The replay itself is watchlists.replay (the real ingest path: storage, live feed, detection). A
Celery worker runs it (queue "ingest"); embedded mode and the browser test have no worker, so
there it runs on a thread of the web process, as `make run`'s demo replay does."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections

from accounts.tenancy import Actor, system_actor
from anomalyhub.lib.errors import InvalidError
from watchlists import replay
from watchlists.demo import DATA
from watchlists.models import Series

logger = logging.getLogger(__name__)
# Long enough for a trading day of ticks at 60x (6.5 min); the cache entry outlives the run.
PROGRESS_TTL = 3600
SPEEDS = (10, 60, 300)


@dataclass(frozen=True)
class DemoFile:
    key: str
    kind: str
    path: str
    label: str
    start: str | None = None  # ISO time in the file to start from (skips the quiet pre-market)


DEMO_FILES = (
    DemoFile("spy-ticks", "trade", "ticks/SPY_trades_20131007.csv.gz", "SPY trades of 2013-10-07 from the open",
             "2013-10-07T09:30:00-04:00"),
    *(DemoFile(f"{s.lower()}-minute", "bar", f"minute/{s}.csv", f"{s} 1-minute bars, 2013-10-07 from the open",
               "2013-10-07T09:30:00-04:00") for s in ("SPY", "IBM", "BAC", "AIG")),
    *(DemoFile(f"{s.lower()}-daily", "bar", f"daily/{s}.csv", f"{s} daily bars, 1998-2021")
      for s in ("SPY", "AAPL")),
)


def files_for(series: Series) -> list[DemoFile]:
    return [f for f in DEMO_FILES if f.kind == series.kind]


def _key(series_id: int) -> str:
    return f"frontend:replay:{series_id}"


def track(series_id: int, *, file: str, total: int, speed: float):
    """Progress of a replay run elsewhere (make run's demo loop), shown by the series' replay panel
    like its own; returns the callback that counts points sent."""
    state = {"state": "running", "sent": 0, "total": total, "file": file, "speed": speed}
    cache.set(_key(series_id), state, PROGRESS_TTL)

    def sent(n: int) -> None:
        state["sent"] += n
        cache.set(_key(series_id), state, PROGRESS_TTL)
    return sent


def progress(series: Series) -> dict:
    """{"state": "idle" | "loading" | "running" | "done" | "failed", "sent", "total", "error"}."""
    return cache.get(_key(series.pk)) or {"state": "idle", "sent": 0, "total": 0}


def start_replay(*, actor: Actor, series: Series, file_key: str, speed: float) -> dict:
    """Starts replaying a demo file into `series` (stored at wall-clock times, so the chart runs
    live). Needs "ingest"; one replay per series at a time."""
    actor.require("ingest")
    demo = next((f for f in files_for(series) if f.key == file_key), None)
    if demo is None:
        raise InvalidError(f"Choose one of the demo files for a {series.get_kind_display()} series.",
                           details={"file": [f"Unknown file '{file_key}'."]})
    if speed not in SPEEDS:
        raise InvalidError(f"Choose a speed of {', '.join(map(str, SPEEDS))}x.", details={"speed": ["Unknown speed."]})
    if progress(series)["state"] in ("loading", "running"):
        raise InvalidError("A replay into this series is already running; stop it first.")
    state = {"state": "loading", "sent": 0, "total": 0, "file": demo.label, "speed": speed}
    cache.delete(_key(series.pk) + ":stop")
    cache.set(_key(series.pk), state, PROGRESS_TTL)
    args = (series.pk, series.organization_id, demo.key, speed)
    if settings.CELERY_TASK_ALWAYS_EAGER:
        threading.Thread(target=_run_on_thread, args=args, daemon=True, name=f"replay-{series.pk}").start()
    else:
        from .tasks import replay_demo

        replay_demo.apply_async(args=args, queue="ingest")
    return state


def stop_replay(*, actor: Actor, series: Series) -> None:
    """Asks the running replay to stop after its current batch (a flag of its own, so progress
    writes never overwrite it)."""
    actor.require("ingest")
    if progress(series)["state"] in ("loading", "running"):
        cache.set(_key(series.pk) + ":stop", True, PROGRESS_TTL)


def _run_on_thread(*args) -> None:
    try:
        run_replay(*args)
    finally:
        close_old_connections()


def run_replay(series_id: int, organization_id: int, file_key: str, speed: float) -> None:
    """The replay loop; progress and the stop flag go through the cache (any process can read)."""
    actor = system_actor(organization_id)
    series = Series.objects.for_actor(actor).filter(pk=series_id).first()
    demo = next((f for f in DEMO_FILES if f.key == file_key), None)
    if series is None or demo is None:
        return
    key = _key(series_id)
    state = cache.get(key) or {}
    try:
        points = replay.load(series, DATA / demo.path, datetime.fromisoformat(demo.start) if demo.start else None)
        state.update(state="running", total=len(points), sent=0, started=time.time())
        cache.set(key, state, PROGRESS_TTL)

        def sent(n: int) -> None:
            state["sent"] += n
            cache.set(key, state, PROGRESS_TTL)

        replay.replay(actor=actor, series=series, points=points, speed=speed, time_mode="wallclock",
                      progress=sent, stop=lambda: bool(cache.get(key + ":stop")))
        state["state"] = "done"
    except Exception as exc:  # shown on the page; the traceback goes to the log
        logger.exception("replay of %s into series %s failed", file_key, series_id)
        state.update(state="failed", error=str(exc)[:300])
    cache.set(key, state, PROGRESS_TTL)
    cache.delete(key + ":stop")
