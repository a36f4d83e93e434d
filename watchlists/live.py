"""Publishes stored points to the live feed's per-series groups (after commit).

Group names are built from ids only: `live.series.<id>`. Consumers (detection.consumers) join
them after checking access; watchlists never needs to know who listens."""

from __future__ import annotations

import logging
import time

import numpy as np

from anomalyhub.lib.channel_layer import group_send_after_commit, group_send_many

from .store.writer import VALUE_COLUMNS, Points

logger = logging.getLogger(__name__)
MAX_POINTS_PER_EVENT = 5000
EVENT_TYPES = {"trade": "tick", "bar": "bar", "metric": "metric"}


def series_group(series_id: int) -> str:
    return f"live.series.{series_id}"


def watchlist_group(watchlist_id: int) -> str:
    return f"live.watchlist.{watchlist_id}"


def publish_watchlist_changed(watchlist_id: int) -> None:
    """After commit: the watchlist's series changed (or it is gone); live subscriptions to it
    re-read it. Best-effort like the feed: a lost message leaves them as they were."""
    group_send_after_commit([(watchlist_group(watchlist_id), {"type": "watchlist.changed", "watchlist": watchlist_id})],
                            "its live subscriptions keep the series they had")


def publish(series_id: int, event: dict) -> None:
    """Sends one event to a series' group. Never raises (see publish_many)."""
    publish_many([(series_id, event)])


def publish_many(events: list[tuple[int, dict]]) -> bool:
    """Sends events to their series' groups, in order, in one Redis round trip (group_send_many).
    Never raises: the feed is best-effort on top of storage, and a dead channel layer must not
    fail an ingest that has already committed. Returns False when the layer refused them (Redis
    down), so an outbox can send them again."""
    if not events:
        return True
    sent = time.time()
    messages = [(series_group(series_id), {"type": "live.event", "series": series_id, "sent": sent, "event": event})
                for series_id, event in events]
    try:
        group_send_many(messages)
    except Exception:  # noqa: BLE001 — logged, and clients re-sync over REST on a sequence gap
        logger.exception("live feed publish failed for series %s", sorted({s for s, _ in events}))
        return False
    return True


def points_event(series_id: int, points: Points) -> dict:
    """One event per stored batch: [ts_ms, *columns] rows (the latest MAX_POINTS_PER_EVENT)."""
    n = len(points)
    keep = slice(max(0, n - MAX_POINTS_PER_EVENT), n)
    order = np.argsort(points.ts[keep], kind="stable")
    columns = list(VALUE_COLUMNS[points.kind])
    rows = [(points.ts[keep][order] // 1000).tolist()] + [points.values[c][keep][order].tolist() for c in columns]
    return {"type": EVENT_TYPES[points.kind], "series": series_id, "columns": ["ts", *columns],
            "points": [list(r) for r in zip(*rows, strict=True)], "count": n, "truncated": n > MAX_POINTS_PER_EVENT}


def publish_points(series_id: int, points: Points) -> None:
    publish_many([(series_id, points_event(series_id, points))])


def publish_points_many(batches: list[tuple[int, Points]]) -> None:
    """One point event per series of a stored batch, all in one publish."""
    publish_many([(series_id, points_event(series_id, points)) for series_id, points in batches])
