"""The queue of work committed batches leave (rollups, detection): PendingWork rows in the database,
the one durable store of it. Redis only carries the wake-up (a Celery message).

- add(): ingest appends a row per (purpose, series) in the transaction that stores the points, so
  the work exists exactly when the points do; appending never waits on a worker.
- claim(): a worker locks the first row of up to `limit` series of an organization with
  SELECT ... FOR UPDATE SKIP LOCKED (a series whose first row another worker holds is left to
  that worker: one worker per series), does their work, and deletes the rows it read, all in one
  transaction. A worker that dies (SIGKILL, OOM, lost connection) rolls back: the rows are
  unlocked and still there for the next claim. (Healthchecks' sendalerts claims the same way.)
- take(): detection's chunk deletes its series' rows in its own transaction, under the lock of
  its cursors, which already serialises a series (detection.pipeline).
- wake() / woken(): at most one wake-up per (purpose, organization) on its way, flagged in the
  cache: the woken task clears the flag before it reads the queue, so rows committed while it
  runs wake the next one. A lost flag sends one message more; a lost message leaves its rows to
  the periodic sweeps, which look at the queue itself (stale(), detection.pipeline.stale_series).

SQLite (embedded mode) has no row locks; select_for_update does nothing there, and one process
runs the tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.core.cache import cache
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from .models import PendingWork

logger = logging.getLogger(__name__)

ROLLUPS = PendingWork.Purpose.ROLLUPS
DETECT = PendingWork.Purpose.DETECT
# A flag outlives a lost message at most this long; the sweeps find its rows meanwhile.
FLAG_SECONDS = 300

Spans = dict[int, tuple[int, int]]


def add(organization_id: int, spans: Spans, purposes=(ROLLUPS, DETECT)) -> None:
    """Queues each series' span {series id: (first µs, last µs)} for every purpose, in the caller's
    transaction. The caller vouches that the series are the organization's."""
    PendingWork.objects.bulk_create([
        PendingWork(purpose=purpose, organization_id=organization_id, series_id=series_id, start_us=lo, end_us=hi)
        for purpose in purposes for series_id, (lo, hi) in sorted(spans.items())])


def take(purpose: str, organization_id: int, series_ids) -> Spans:
    """Deletes the series' rows in the caller's transaction and returns their span per series (the
    earliest start, the latest end). The caller holds what serialises the series (detection: its
    cursor locks), so rows appear here once."""
    rows = PendingWork.objects.filter(purpose=purpose, organization_id=organization_id,
                                      series_id__in=list(series_ids))
    spans = {series_id: (lo, hi) for series_id, lo, hi in
             rows.values("series_id").annotate(lo=Min("start_us"), hi=Max("end_us"))
             .values_list("series_id", "lo", "hi")}
    if spans:
        rows.delete()
    return spans


class Claim:
    """The spans a claim() holds; release() leaves a series' rows queued (its work failed)."""

    def __init__(self, spans: Spans, rows: dict[int, list[int]]):
        self.spans, self._rows = spans, rows

    def release(self, series_id: int) -> None:
        self._rows.pop(series_id, None)

    def done(self) -> list[int]:
        return [pk for pks in self._rows.values() for pk in pks]


@contextmanager
def claim(purpose: str, organization_id: int, limit: int) -> Iterator[Claim]:
    """Claims up to `limit` series of the organization's queue (their oldest first) and yields their
    spans; when the block ends without an error, their rows read here are deleted (not the rows
    added meanwhile), in the same transaction as the block's work. See the module docstring."""
    with transaction.atomic():
        queue = PendingWork.objects.filter(purpose=purpose, organization_id=organization_id)
        firsts = queue.values("series_id").annotate(first=Min("pk")).values("first")
        series_ids = list(PendingWork.objects.select_for_update(skip_locked=True).filter(pk__in=firsts)
                          .order_by("pk").values_list("series_id", flat=True)[:limit])
        spans: Spans = {}
        rows: dict[int, list[int]] = {}
        for pk, series_id, lo, hi in queue.filter(series_id__in=series_ids).values_list(
                "pk", "series_id", "start_us", "end_us"):
            old = spans.get(series_id, (lo, hi))
            spans[series_id] = (min(old[0], lo), max(old[1], hi))
            rows.setdefault(series_id, []).append(pk)
        held = Claim(spans, rows)
        yield held
        PendingWork.objects.filter(pk__in=held.done()).delete()


def waiting(purpose: str, organization_id: int) -> list[int]:
    """The organization's series with rows queued for `purpose`."""
    return sorted(set(PendingWork.objects.filter(purpose=purpose, organization_id=organization_id)
                      .values_list("series_id", flat=True)))


def stale(purpose: str, older_than_seconds: float) -> list[int]:
    """Organizations with rows queued for `purpose` longer than that: their wake-up was lost (Redis
    emptied or restarted), or their work keeps failing."""
    since = timezone.now() - timedelta(seconds=older_than_seconds)
    return sorted(set(PendingWork.objects.filter(purpose=purpose, created_at__lt=since)
                      .values_list("organization_id", flat=True)))


def _flag(purpose: str, organization_id: int) -> str:
    return f"pending:{purpose}:woken:{organization_id}"


def wake(purpose: str, organization_id: int, send: Callable[[], object]) -> None:
    """Calls send() (queues the task that works the organization's rows) unless a wake-up is on its
    way already: a burst of batches costs one message."""
    if not cache.add(_flag(purpose, organization_id), 1, timeout=FLAG_SECONDS):
        return
    try:
        send()
    except Exception:
        cache.delete(_flag(purpose, organization_id))  # nothing is on its way: the next batch wakes
        raise


def woken(purpose: str, organization_id: int) -> None:
    """Called by the woken task before it reads the queue: rows committed from now on wake another.
    With the cache unreachable the flag expires by itself (FLAG_SECONDS); the work goes on."""
    try:
        cache.delete(_flag(purpose, organization_id))
    except Exception:  # noqa: BLE001 — see the docstring
        logger.warning("the %s wake-up flag of organization %s could not be cleared", purpose, organization_id,
                       exc_info=True)
