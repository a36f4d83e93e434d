"""Retention of raw ticks: per-organization cutoffs, whole partitions dropped only when expired for all."""

import contextlib
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from tests.factories import OrganizationFactory, SeriesFactory
from tests.sessions import other_session
from watchlists.retention import purge_expired_ticks, tick_partitions
from watchlists.store import partitions
from watchlists.store.timeconv import to_us
from watchlists.store.writer import Points, write_points

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)


def _ticks(series, times):
    partitions.ensure_partitions("watchlists_tick", min(times), max(times))
    ts = np.array([to_us(t) for t in times], dtype=np.int64)
    write_points(series.organization_id, series.pk, Points("trade", ts, {"price": np.ones(len(ts)),
                                                                       "size": np.ones(len(ts))}))


def _times(series):
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts FROM watchlists_tick WHERE series_id = %s ORDER BY ts", [series.pk])
        return [row[0] for row in cursor.fetchall()]


def _history(org, retention_days, symbol):
    org.retention_days = retention_days
    org.save()
    series = SeriesFactory(organization=org, symbol=symbol, kind="trade", bar_seconds=None)
    # One tick on the 1st of every month from 2025-01 to 2026-06.
    months = [datetime(2025 + (m // 12), m % 12 + 1, 1, 15, tzinfo=UTC) for m in range(18)]
    _ticks(series, months)
    return series, months


def test_each_organization_keeps_its_own_retention_and_whole_partitions_go_only_when_expired_for_all():
    short, long = OrganizationFactory(name="short"), OrganizationFactory(name="long")
    s_short, months = _history(short, 30, "SHRT")
    s_long, _ = _history(long, 365, "LONG")
    bars = SeriesFactory(organization=short, symbol="BARS", kind="bar", bar_seconds=60)

    report = purge_expired_ticks(NOW)

    long_cutoff, short_cutoff = NOW - timedelta(days=365), NOW - timedelta(days=30)
    assert _times(s_long) == [t for t in months if t >= long_cutoff]
    assert _times(s_short) == [t for t in months if t >= short_cutoff]
    # Months before 2025-06 ended before both cutoffs: dropped whole (ticks of 2025-01..2025-05).
    assert {f"watchlists_tick_p2025_{m:02d}" for m in range(1, 6)} <= set(report.dropped)
    assert "watchlists_tick_p2025_06" not in report.dropped
    assert all(start >= datetime(2025, 6, 1, tzinfo=UTC) for _, start, _ in tick_partitions())
    kept_partitions = datetime(2025, 6, 1, tzinfo=UTC)
    # Inside kept partitions each organization deletes only its own expired ticks (2025-06-01 is
    # older than 365 days too, so the long-retention organization loses that one).
    assert report.deleted == {short.pk: len([t for t in months if kept_partitions <= t < short_cutoff]),
                              long.pk: 1}
    assert bars.organization_id == short.pk  # bar series are not subject to tick retention

    again = purge_expired_ticks(NOW)
    assert again.dropped == [] and again.deleted == {}


def test_a_late_write_into_a_dropped_month_recreates_its_partition():
    org = OrganizationFactory()
    series, _ = _history(org, 30, "LATE")
    purge_expired_ticks(NOW)
    old = datetime(2025, 2, 3, tzinfo=UTC)
    _ticks(series, [old])
    assert old in _times(series)


@contextlib.contextmanager
def _long_read_of_the_ticks():
    """Another session reading the tick table in an open transaction, as an export streaming for
    minutes does: it holds the table's ACCESS SHARE lock until it ends."""
    with other_session() as reader:
        reader.execute("SELECT count(*) FROM watchlists_tick").fetchone()
        yield
        reader.rollback()


def _insert_behind_the_drop(series, when, seconds: list) -> threading.Thread:
    """From another session, once a DROP TABLE is seen waiting for its lock: inserts one tick at
    `when` (a month whose partition exists) and records how long the insert took, so the insert
    surely queues behind the DROP rather than racing it."""
    def insert():
        with other_session(autocommit=True) as writer:
            deadline = time.monotonic() + 10
            while not writer.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND query LIKE 'DROP TABLE%%'").fetchone():
                if time.monotonic() > deadline:
                    return  # no DROP ever waited: `seconds` stays empty and the test says so
                time.sleep(0.02)
            started = time.monotonic()
            writer.execute("INSERT INTO watchlists_tick (organization_id, series_id, ts, price, size) "
                           "VALUES (%s, %s, %s, 1, 1)", [series.organization_id, series.pk, when])
            seconds.append(time.monotonic() - started)
    thread = threading.Thread(target=insert)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_long_read_of_the_ticks_delays_the_partition_drop_not_every_insert(caplog):
    """DROP TABLE of a partition needs an ACCESS EXCLUSIVE lock on the tick table. Queued behind a
    long read, it held up every tick insert (any organization's, any month's) until the read ended.
    Now it waits DDL_LOCK_TIMEOUT at most and is left to the next run, whose drop costs nothing."""
    org = OrganizationFactory(name="busy")
    series, months = _history(org, 30, "BUSY")
    kept_from = datetime(2026, 5, 1, tzinfo=UTC)  # the cutoff (NOW - 30 days) is in May: older months expired
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '20s'")  # without the fix the DROP waited for the read's end
    try:
        with _long_read_of_the_ticks():
            waits: list[float] = []
            writer = _insert_behind_the_drop(series, NOW, waits)
            report = purge_expired_ticks(NOW)
            writer.join(10)
        assert waits, "the retention's DROP never waited for the long read's lock"
        # Queued behind the DROP (so the stall was real), and only until it gave up.
        assert 0.5 < waits[0] < 5, f"an insert waited {waits[0]:.2f} s behind the retention's DROP"
        assert report.dropped == [] and "not dropped" in caplog.text
        # The expired months' ticks wait for the next run's drop; the kept months are trimmed as ever.
        assert [t for t in _times(series) if t < kept_from] == [t for t in months if t < kept_from]
        assert [t for t in _times(series) if t >= kept_from] == [datetime(2026, 6, 1, 15, tzinfo=UTC), NOW]

        later = purge_expired_ticks(NOW)  # the read has ended
        expired = {f"watchlists_tick_p{t.year}_{t.month:02d}" for t in months if t < kept_from}
        assert len(expired) == 16 and expired <= set(later.dropped)  # (with any older ones other tests left)
        assert _times(series) == [datetime(2026, 6, 1, 15, tzinfo=UTC), NOW]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
        partitions.forget_known_partitions()


@pytest.mark.django_db(transaction=True)
def test_a_new_months_partition_is_created_at_once_behind_a_long_read():
    """A partition is made as a plain table and attached, which locks the tick table only in SHARE
    UPDATE EXCLUSIVE mode: a long read does not hold it up, and it holds up no reader or writer.
    (`CREATE TABLE .. PARTITION OF` needs ACCESS EXCLUSIVE: it waited for the read, then failed.)"""
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '20s'")
    try:
        with _long_read_of_the_ticks():
            started = time.monotonic()
            partitions.ensure_partitions("watchlists_tick", datetime(2031, 3, 2, tzinfo=UTC),
                                         datetime(2031, 3, 3, tzinfo=UTC))
            assert time.monotonic() - started < 1
            assert "watchlists_tick_p2031_03" in {name for name, _, _ in tick_partitions()}
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
            cursor.execute("DROP TABLE IF EXISTS watchlists_tick_p2031_03")
        partitions.forget_known_partitions()
