"""Retention of raw ticks: per-organization cutoffs, whole partitions dropped only when expired for all."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from tests.factories import OrganizationFactory, SeriesFactory
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
