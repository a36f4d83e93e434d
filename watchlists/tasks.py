"""Ingest-queue tasks. Arguments are ids and integers; every task is safe to run twice."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction

from . import pending
from .models import Series
from .store import partitions, rollups

logger = logging.getLogger(__name__)


def enqueue_rollups(organization_id: int) -> None:
    """Wakes the organization's rollup refresh for the rows ingest queued (watchlists.pending).
    A refresh recomputes whole buckets, so it costs about the same for one batch as for a minute
    of them: waiting ROLLUP_DELAY_SECONDS lets a busy series' batches share one."""
    pending.wake(pending.ROLLUPS, organization_id,
                 lambda: refresh_pending_rollups.apply_async((organization_id,), countdown=rollup_delay()))


def rollup_delay() -> float:
    return getattr(settings, "ROLLUP_DELAY_SECONDS", 30)


@shared_task(name="watchlists.refresh_pending_rollups", acks_late=True)
def refresh_pending_rollups(organization_id: int) -> int:
    """Refreshes the rollups of up to ROLLUP_SERIES_PER_TASK series of the organization's queue,
    each over the span its batches covered since its last refresh; returns series refreshed.

    The claim, the refreshes and the rows' deletion are one transaction (pending.claim): a worker
    killed mid-refresh leaves the rows for the next one. A series whose refresh fails keeps its
    rows (the others go on) for the next refresh or the sweep. Rows left over (more series than
    one task takes, or series another worker holds) wake the next run, behind other organizations'."""
    pending.woken(pending.ROLLUPS, organization_id)
    done, failed = 0, set()
    with pending.claim(pending.ROLLUPS, organization_id, settings.ROLLUP_SERIES_PER_TASK) as claim:
        series_list = list(Series.objects.filter(pk__in=list(claim.spans), organization_id=organization_id)
                           .order_by("pk"))
        for i, series in enumerate(series_list):
            try:
                with transaction.atomic():
                    rollups.refresh_rollups(series, *claim.spans[series.pk])
            except (OperationalError, InterfaceError):
                raise  # the connection is gone: the whole claim rolls back, every row stays queued
            except SoftTimeLimitExceeded:
                # Out of time: what is refreshed commits, the rest stays queued for the next run.
                for rest in series_list[i:]:
                    claim.release(rest.pk)
                break
            except Exception:  # noqa: BLE001 — logged; its rows stay queued for the sweep, the others go on
                logger.exception("rollup refresh of series %s over %s failed; its rows stay queued", series.pk,
                                 claim.spans[series.pk])
                claim.release(series.pk)
                failed.add(series.pk)
                continue
            done += 1
    # Failed series are left to the sweep, so an error that repeats does not spin.
    if set(pending.waiting(pending.ROLLUPS, organization_id)) - failed:
        enqueue_rollups(organization_id)
    return done


# Rows no refresh took this long after their batch: the wake-up was lost (Redis emptied or
# restarted) or the refresh keeps failing. The sweep wakes their organization's refresh.
SWEEP_GRACE_SECONDS = 60


@shared_task(name="watchlists.sweep_rollups")
def sweep_rollups(older_than_seconds: float | None = None) -> int:
    """Beat: queues a rollup refresh for every organization with rows older than the usual delay
    and SWEEP_GRACE_SECONDS. Returns the organizations woken."""
    if older_than_seconds is None:
        older_than_seconds = rollup_delay() + SWEEP_GRACE_SECONDS
    organizations = pending.stale(pending.ROLLUPS, older_than_seconds)
    for organization_id in organizations:
        refresh_pending_rollups.delay(organization_id)
    return len(organizations)


@shared_task(name="watchlists.ensure_partitions")
def ensure_partitions() -> None:
    partitions.ensure_partitions_ahead()
