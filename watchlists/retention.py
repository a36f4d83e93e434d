"""Retention of raw ticks: each organization keeps `retention_days` of them (Organization.retention_days).

Tick partitions are by month and shared by every organization, so a partition is dropped whole
only when it ends before the cutoff of *every* organization that has tick series (all of its
rows are expired for all of them; a DROP is instant and returns the space at once). Inside the
partitions that remain, each organization's own expired ticks are deleted through the
(series_id, ts) index, touching no other organization's rows. Bars, rollups and features are
kept: they are small and the detectors train on them.

Safe to run twice or late: a second run finds nothing to drop and nothing older than the cutoffs.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.db import OperationalError, connection, transaction
from psycopg.errors import LockNotAvailable

from accounts.models import Organization

from .models import Series, SeriesKind
from .store import partitions
from .store.reader import store_time
from .store.schema import RAW_TABLES, partition_bounds, partitioned
from .store.timeconv import to_us

logger = logging.getLogger(__name__)
TABLE = RAW_TABLES[SeriesKind.TRADE]
_PARTITION_NAME = re.compile(rf"^{TABLE}_p(\d{{4}})_(\d{{2}})$")


@dataclass
class PurgeReport:
    dropped: list[str] = field(default_factory=list)
    deleted: dict[int, int] = field(default_factory=dict)  # organization id -> tick rows deleted


def cutoffs(now: datetime) -> dict[int, datetime]:
    """Organization id -> the oldest tick time it keeps, for organizations with tick series."""
    orgs = Series.objects.filter(kind=SeriesKind.TRADE).values_list("organization_id", flat=True).distinct()
    days = Organization.objects.filter(pk__in=orgs).values_list("pk", "retention_days")
    # At least one day: a zero retention must never reach the partition being written now.
    return {pk: now - timedelta(days=max(1, d)) for pk, d in days}


def tick_partitions() -> list[tuple[str, datetime, datetime]]:
    """(name, start, end) of the tick table's monthly partitions, oldest first (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s", [TABLE])
        names = [row[0] for row in cursor.fetchall()]
    out = []
    for name in names:
        match = _PARTITION_NAME.match(name)
        if match:  # partitions not named by the store's scheme are not ours to judge
            out.append(partition_bounds(TABLE, datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)))
    return sorted(out, key=lambda p: p[1])


def _drop_expired_partitions(oldest_cutoff: datetime) -> tuple[list[str], datetime | None]:
    """(partitions dropped, None), or ([], the end of those that could not be: their rows are left
    to the next run's drop, which costs nothing, rather than deleted one by one)."""
    expired = [(name, end) for name, _start, end in tick_partitions() if end <= oldest_cutoff]
    if not expired:
        return [], None
    try:
        with partitions.partition_ddl() as cursor:
            for name, _end in expired:
                cursor.execute(f"DROP TABLE IF EXISTS {name}")
    except OperationalError as exc:
        if not isinstance(exc.__cause__, LockNotAvailable):
            raise
        logger.warning("retention: partitions %s not dropped: a long read of the ticks (an export?) holds the "
                       "table, and dropping now would stall every tick insert behind it. The next run drops them.",
                       [name for name, _end in expired])
        return [], max(end for _name, end in expired)
    partitions.forget_known_partitions()  # a late write into that month must create it again
    return [name for name, _end in expired], None


def _delete_expired_ticks(organization_id: int, cutoff: datetime, not_before: datetime | None = None) -> int:
    series_ids = list(Series.objects.filter(organization_id=organization_id, kind=SeriesKind.TRADE)
                      .values_list("pk", flat=True))
    if not series_ids:
        return 0
    since = "AND ts >= %s" if not_before else ""  # the expired partitions not dropped wait for the next run
    marks = ",".join("%s" for _ in series_ids)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE organization_id = %s AND series_id IN ({marks}) AND ts < %s {since}",
                       [organization_id, *series_ids, store_time(to_us(cutoff)),
                        *([store_time(to_us(not_before))] if not_before else [])])
        return cursor.rowcount


def purge_expired_ticks(now: datetime | None = None) -> PurgeReport:
    """Drops tick partitions expired for every organization, then trims each organization's
    own expired ticks. Idempotent; never touches rows another organization still keeps."""
    now = now or datetime.now(UTC)
    report = PurgeReport()
    limits = cutoffs(now)
    if not limits:
        return report
    not_before = None
    if partitioned():
        report.dropped, not_before = _drop_expired_partitions(min(limits.values()))
    for organization_id, cutoff in sorted(limits.items()):
        deleted = _delete_expired_ticks(organization_id, cutoff, not_before)
        if deleted:
            report.deleted[organization_id] = deleted
    logger.info("retention: dropped %s, deleted ticks per org %s", report.dropped, report.deleted)
    return report


@shared_task(name="watchlists.purge_expired_ticks", acks_late=True, soft_time_limit=3000, time_limit=3600)
def purge_expired_ticks_task() -> dict:
    """Beat (nightly). Safe to run twice or late."""
    report = purge_expired_ticks()
    return {"dropped": report.dropped, "deleted": {str(k): v for k, v in report.deleted.items()}}
