"""Ingest-queue tasks. Arguments are ids and integers; every task is safe to run twice."""

import logging
import uuid
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from anomalyhub.lib.worker import WORKER_PID

from . import coalesce
from .backlog import backlog_statements, take_backlog, widened
from .models import RollupBacklog, Series
from .store import partitions, rollups

logger = logging.getLogger(__name__)

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

    One refresh at a time per worker (its pool processes share the main process, WORKER_PID):
    the worker also serves the detect queue, and refreshes that fire together (their delays end
    together) must not take every pool process for seconds while detection runs wait behind them.
    A refresh that finds another running comes back later; its series keep their queued flags."""
    guard = f"{ROLLUPS}:running:{self.request.hostname}:{WORKER_PID}"
    if not self.request.is_eager and not cache.add(guard, 1, timeout=settings.CELERY_TASK_TIME_LIMIT):
        refresh_pending_rollups.apply_async((series_ids, organization_id), countdown=ONE_REFRESH_RETRY_SECONDS)
        return
    run = self.request.id or uuid.uuid4().hex
    spans: dict[int, tuple[int, int]] = {}
    try:
        spans = {series_id: span for series_id, span in coalesce.release(ROLLUPS, series_ids, run).items() if span}
        # With what PostgreSQL kept of them: the same batches, unless Redis lost some (emptied, a
        # key evicted) or they were handed back after a failure.
        spans = widened(spans, take_backlog(organization_id, series_ids))
        for series in Series.objects.filter(pk__in=list(spans), organization_id=organization_id).order_by("pk"):
            rollups.refresh_rollups(series, *spans[series.pk])
            del spans[series.pk]
    except Exception:
        # The spans were taken off Redis: the ones not refreshed go back, or nothing would redo them.
        hand_back(organization_id, spans)
        raise
    finally:
        # Done with what it took (refreshed or handed back). Not reached if the process is killed:
        # the spans stay held under this run's name, and the next release of the series takes them.
        # With Redis gone these fail too; they must not hide the error that ended the run.
        try:
            coalesce.finish(ROLLUPS, series_ids, run)
            if not self.request.is_eager:
                cache.delete(guard)
        except Exception:  # noqa: BLE001 — held spans are taken again (refreshed twice); the guard expires
            logger.exception("rollup run %s could not let go of series %s", run, series_ids)


def hand_back(organization_id: int, spans: dict[int, tuple[int, int]]) -> None:
    """Spans whose refresh failed: kept for the rollup sweep (PostgreSQL), or, when PostgreSQL is
    what failed, claimed again in Redis and queued after the usual delay. Not queued straight
    away either way, so an error that repeats does not spin."""
    if not spans or keep_for_sweep(organization_id, spans):
        return
    try:
        enqueue_rollups(organization_id, spans)
    except Exception:  # noqa: BLE001 — both stores are down; say what is lost and how to rebuild it
        logger.exception(LOST, sorted(spans.items()))


LOST = ("rollups of (series, (start µs, end µs)) %s are not queued anywhere (Redis and PostgreSQL both failed); "
        "the points are stored: watchlists.store.rollups.refresh_rollups(series, start, end) rebuilds them")


def keep_for_sweep(organization_id: int, spans: dict[int, tuple[int, int]]) -> bool:
    """Records spans in RollupBacklog (widening a series' row) for sweep_rollups; False if it could
    not. Called where something already failed, so it logs its own failure instead of raising."""
    if not spans:
        return True
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            for sql, params in backlog_statements(organization_id, spans):
                cursor.execute(sql, params)
    except Exception:  # noqa: BLE001 — see the docstring
        logger.exception("rollup spans of series %s could not be kept for the rollup sweep", sorted(spans))
        return False
    logger.warning("rollup spans of series %s kept for the rollup sweep", sorted(spans))
    return True


# Backlog rows left alone this long after their last batch were not taken by a refresh: its task
# was lost (Redis emptied or evicted the claim) or every try failed. The sweep rebuilds them.
SWEEP_GRACE_SECONDS = 60


@shared_task(name="watchlists.sweep_rollups")
def sweep_rollups(limit: int = 200, older_than_seconds: float | None = None) -> int:
    """Beat: refreshes the RollupBacklog spans no refresh took within the usual delay and
    SWEEP_GRACE_SECONDS, oldest first. Each is taken (take_backlog), refreshed, and handed back if
    it fails again, for the next sweep; the others go on. Returns spans refreshed. A large span
    (Redis down for an hour of ticks) is one refresh, as a day's import is."""
    if older_than_seconds is None:
        older_than_seconds = rollup_delay() + SWEEP_GRACE_SECONDS
    stale = RollupBacklog.objects.filter(updated_at__lt=timezone.now() - timedelta(seconds=older_than_seconds))
    by_organization: dict[int, list[int]] = {}
    for organization_id, series_id in stale.order_by("updated_at").values_list("organization_id",
                                                                              "series_id")[:limit]:
        by_organization.setdefault(organization_id, []).append(series_id)
    done = 0
    for organization_id, series_ids in by_organization.items():
        spans = take_backlog(organization_id, series_ids)
        for series in Series.objects.filter(pk__in=list(spans), organization_id=organization_id).order_by("pk"):
            try:
                rollups.refresh_rollups(series, *spans[series.pk])
            except Exception:  # noqa: BLE001 — logged; handed back for the next sweep, the others go on
                logger.exception("rollup sweep: series %s %s failed again", series.pk, spans[series.pk])
                hand_back(organization_id, {series.pk: spans[series.pk]})
                continue
            done += 1
    return done


@shared_task(name="watchlists.ensure_partitions")
def ensure_partitions() -> None:
    partitions.ensure_partitions_ahead()
