"""Scheduled and queued provider jobs (queue `ingest`, by the watchlists.* route).

Arguments are ids; each task re-reads its rows filtered by organization too. All of them are
safe to run twice or late: sessions already imported are skipped, gaps are recomputed from
the store, backfills resume from their cursor, and points are idempotent on (series, ts).
"""

from __future__ import annotations

import logging
from datetime import date

from celery import shared_task
from django.utils import timezone

from accounts.tenancy import system_actor

from ..retention import purge_expired_ticks_task  # noqa: F401 (autodiscovery reaches this module, not retention.py)
from . import services
from .base import ProviderError
from .models import Backfill, SeriesProvider

logger = logging.getLogger(__name__)
RETRY_LIMIT = 5


def _link(link_id: int, organization_id: int) -> SeriesProvider | None:
    return (SeriesProvider.objects.select_related("series")
            .filter(pk=link_id, organization_id=organization_id, enabled=True).first())


@shared_task(name="watchlists.providers.daily_import")
def daily_import() -> int:
    """Beat: queue the import of every closed, not yet imported session (none on weekends and
    exchange holidays: the calendar has no session then)."""
    queued = 0
    for link, sessions in services.due_imports(now=timezone.now()):
        for session in sessions:
            import_session.delay(link.pk, link.organization_id, session.isoformat())
            queued += 1
    return queued


@shared_task(name="watchlists.providers.import_session", bind=True, acks_late=True, max_retries=RETRY_LIMIT)
def import_session(self, link_id: int, organization_id: int, session: str) -> int:
    link = _link(link_id, organization_id)
    if link is None:
        return 0
    try:
        return services.import_session(actor=system_actor(organization_id), link=link,
                                       session=date.fromisoformat(session)).stored
    except ProviderError as exc:
        if exc.permanent or self.request.called_directly:
            return 0  # recorded on the link for the user; retrying a bad key helps nobody
        raise self.retry(countdown=exc.retry_after or 60 * 2 ** self.request.retries, exc=exc)


@shared_task(name="watchlists.providers.detect_gaps")
def detect_gaps() -> int:
    """Beat: queue a gap check of the recent sessions for every enabled bar series."""
    queued = 0
    for link in SeriesProvider.objects.filter(enabled=True, series__kind="bar").exclude(provider="replay"):
        fill_gaps.delay(link.pk, link.organization_id)
        queued += 1
    return queued


@shared_task(name="watchlists.providers.fill_gaps", bind=True, acks_late=True, max_retries=RETRY_LIMIT)
def fill_gaps(self, link_id: int, organization_id: int, days: int = services.GAP_DAYS) -> dict:
    link = _link(link_id, organization_id)
    if link is None:
        return {}
    try:
        report = services.fill_gaps(actor=system_actor(organization_id), link=link, days=days)
    except ProviderError as exc:
        if exc.permanent or self.request.called_directly:
            return {"error": exc.message}
        raise self.retry(countdown=exc.retry_after or 60 * 2 ** self.request.retries, exc=exc)
    return {"missing": report.missing, "filled": report.filled}


@shared_task(name="watchlists.providers.run_backfill", bind=True, acks_late=True, max_retries=RETRY_LIMIT)
def run_backfill(self, backfill_id: int, organization_id: int) -> str:
    backfill = Backfill.objects.select_related("series").filter(pk=backfill_id, organization_id=organization_id).first()
    if backfill is None or backfill.status == Backfill.Status.DONE:
        return "nothing to do"
    try:
        services.run_backfill(actor=system_actor(organization_id), backfill=backfill)
    except ProviderError as exc:
        if exc.permanent or self.request.called_directly:
            return exc.message
        raise self.retry(countdown=exc.retry_after or 60 * 2 ** self.request.retries, exc=exc)
    return "done"
