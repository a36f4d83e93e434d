"""Ingest-queue tasks. Arguments are ids and integers; every task is safe to run twice."""

from celery import shared_task
from django.conf import settings

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


@shared_task(name="watchlists.refresh_pending_rollups", acks_late=True)
def refresh_pending_rollups(series_ids: list[int], organization_id: int) -> None:
    """Refreshes the span each series accumulated since its last refresh. Takes the span before
    reading, so points stored meanwhile queue the next run."""
    spans = coalesce.release(ROLLUPS, series_ids)
    for series in Series.objects.filter(pk__in=[k for k, v in spans.items() if v], organization_id=organization_id):
        rollups.refresh_rollups(series, *spans[series.pk])


@shared_task(name="watchlists.ensure_partitions")
def ensure_partitions() -> None:
    partitions.ensure_partitions_ahead()
