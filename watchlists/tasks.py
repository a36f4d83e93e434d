"""Ingest-queue tasks. Arguments are ids and integers; every task is safe to run twice."""

import os

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from . import coalesce
from .models import Series
from .store import partitions, rollups

ROLLUPS = "rollups"


def enqueue_rollups(organization_id: int, spans: dict[int, tuple[int, int]]) -> None:
    """Widens each series' pending rollup span and queues one task for the series that had none
    queued: a burst of batches costs one refresh per series, not one per batch."""
    fresh = coalesce.claim(ROLLUPS, list(spans), spans)
    if fresh:
        # A refresh recomputes whole buckets, so it costs about the same for one batch as for a
        # minute of them: waiting ROLLUP_DELAY_SECONDS lets a busy series' batches share one.
        refresh_pending_rollups.apply_async((fresh, organization_id), countdown=rollup_delay())


def rollup_delay() -> float:
    return getattr(settings, "ROLLUP_DELAY_SECONDS", 30)


@shared_task(name="watchlists.refresh_rollups", acks_late=True)
def refresh_rollups(series_id: int, organization_id: int, start_us: int, end_us: int) -> None:
    """Recomputes rollups and features touched by [start_us, end_us]. Idempotent (full recompute).
    Ingest now queues refresh_pending_rollups; this stays for messages already queued."""
    series = Series.objects.filter(pk=series_id, organization_id=organization_id).first()
    if series is not None:
        rollups.refresh_rollups(series, start_us, end_us)


ONE_REFRESH_RETRY_SECONDS = 5


@shared_task(name="watchlists.refresh_pending_rollups", acks_late=True, bind=True)
def refresh_pending_rollups(self, series_ids: list[int], organization_id: int) -> None:
    """Refreshes the span each series accumulated since its last refresh. Takes the span before
    reading, so points stored meanwhile queue the next run.

    One refresh at a time per worker (its pool processes share the main process, os.getppid()):
    the worker also serves the detect queue, and refreshes that fire together (their delays end
    together) must not take every pool process for seconds while detection runs wait behind them.
    A refresh that finds another running comes back later; its series keep their queued flags."""
    guard = f"{ROLLUPS}:running:{self.request.hostname}:{os.getppid()}"
    if not self.request.is_eager and not cache.add(guard, 1, timeout=settings.CELERY_TASK_TIME_LIMIT):
        refresh_pending_rollups.apply_async((series_ids, organization_id), countdown=ONE_REFRESH_RETRY_SECONDS)
        return
    try:
        spans = coalesce.release(ROLLUPS, series_ids)
        for series in Series.objects.filter(pk__in=[k for k, v in spans.items() if v],
                                            organization_id=organization_id):
            rollups.refresh_rollups(series, *spans[series.pk])
    finally:
        if not self.request.is_eager:
            cache.delete(guard)


@shared_task(name="watchlists.ensure_partitions")
def ensure_partitions() -> None:
    partitions.ensure_partitions_ahead()
