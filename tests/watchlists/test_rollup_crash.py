"""A worker SIGKILLed in the middle of a rollup refresh: the restarted worker's next refresh of the
series covers what the dead one had taken, so no minute of stored points is left without rollups."""

import numpy as np
import psycopg
import pytest
from django.db import connection

from accounts.tenancy import system_actor
from tests.factories import OrganizationFactory, SeriesFactory
from tests.workers import Worker, queued_for_real, wait_for, worker_env
from watchlists.services import ingest
from watchlists.store import reader
from watchlists.store.writer import Points

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

MINUTE_US = 60_000_000
T0 = 1_600_000_020 * 1_000_000  # 2020-09-13 12:27:00 UTC, a minute boundary


def _ticks(minute: int, prices: list[float]) -> Points:
    ts = T0 + minute * MINUTE_US + np.arange(len(prices), dtype=np.int64) * 1_000_000
    return Points("trade", ts, {"price": np.array(prices), "size": np.full(len(prices), 10.0)})


def _minutes(series) -> dict[int, tuple]:
    data = reader.read_rollup(series.pk, 60, T0, T0 + 10 * MINUTE_US)
    return {int(ts): (o, h, lo, c, n) for ts, o, h, lo, c, n in zip(
        data["ts"], data["open"], data["high"], data["low"], data["close"], data["trade_count"], strict=True)}


def _refresh_waits_on_the_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event_type = 'Lock' AND query ILIKE %s", ["%watchlists_rollup%"])
        return cursor.fetchone()[0] > 0


def test_a_worker_killed_mid_refresh_loses_no_rollup(settings, clean_store):
    settings.ROLLUP_DELAY_SECONDS = 0
    org = OrganizationFactory()
    series = SeriesFactory(organization=org, symbol="SPY", kind="trade", exchange="", bar_seconds=None)
    actor = system_actor(org.pk)
    env = worker_env()
    db = connection.settings_dict
    with queued_for_real():
        # Another session holds the rollup table: the refresh reads the ticks, then waits to write.
        blocker = psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"])
        blocker.execute("LOCK TABLE watchlists_rollup IN ACCESS EXCLUSIVE MODE")
        first = Worker("ingest", env)
        try:
            ingest(actor=actor, batches=[(series, _ticks(0, [100.0, 104.0, 99.0, 101.0]))])
            wait_for(_refresh_waits_on_the_lock, 60, message="the refresh to wait on the rollup table")
            first.kill()
        finally:
            blocker.close()  # its transaction ends; the dead worker's session is gone too
            first.stop()
        assert _minutes(series) == {}, "the refresh must die before writing for this test to mean anything"

        second = Worker("ingest", env)
        try:
            # The next batch of the series (a later minute) queues the next refresh.
            ingest(actor=actor, batches=[(series, _ticks(2, [200.0, 201.0]))])
            wait_for(lambda: len(_minutes(series)) == 2, 60, message="the restarted worker's refresh")
        finally:
            second.stop()
    assert _minutes(series) == {T0: (100.0, 104.0, 99.0, 101.0, 4), T0 + 2 * MINUTE_US: (200.0, 201.0, 200.0, 201.0, 2)}
