"""Ingest-queue tasks. Arguments are ids and integers; every task is safe to run twice."""

from celery import shared_task

from .models import Series
from .store import partitions, rollups


@shared_task(name="watchlists.refresh_rollups", acks_late=True)
def refresh_rollups(series_id: int, organization_id: int, start_us: int, end_us: int) -> None:
    """Recomputes rollups and features touched by [start_us, end_us]. Idempotent (full recompute)."""
    series = Series.objects.filter(pk=series_id, organization_id=organization_id).first()
    if series is not None:
        rollups.refresh_rollups(series, start_us, end_us)


@shared_task(name="watchlists.ensure_partitions")
def ensure_partitions() -> None:
    partitions.ensure_partitions_ahead()
