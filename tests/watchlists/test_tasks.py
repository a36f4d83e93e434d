"""Rollups are never lost to an outage: every batch's span is queued in PostgreSQL with its points
(watchlists.pending); the refresh its wake-up starts claims it, keeps it queued if it fails, and
what no refresh took (the wake-up lost with Redis, or a refresh failing) the rollup sweep wakes."""

from datetime import datetime, timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError
from django.utils import timezone

from tests.factories import SeriesFactory
from tests.watchlists.conftest import count_rows
from watchlists import pending, tasks
from watchlists.models import PendingWork
from watchlists.store import reader
from watchlists.store.timeconv import to_us

pytestmark = pytest.mark.django_db

TICKS = [
    {"ts": "2013-10-07T09:30:00.001-04:00", "price": 168.10, "size": 100},
    {"ts": "2013-10-07T09:30:20.000-04:00", "price": 168.40, "size": 200},
    {"ts": "2013-10-07T09:31:05.000-04:00", "price": 168.20, "size": 300},
]
REDIS_DOWN = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:1/0"}}  # nothing listens on port 1
ROLLUPS = PendingWork.objects.filter(purpose=pending.ROLLUPS)


def us(iso: str) -> int:
    return to_us(datetime.fromisoformat(iso))


def minute_rollups(series):
    data = reader.read_rollup(series.pk, 60, us("2013-10-07T00:00:00+00:00"), us("2013-10-08T00:00:00+00:00"))
    return [(int(ts), o, h, lo, c, v, n) for ts, o, h, lo, c, v, n in zip(
        data["ts"], data["open"], data["high"], data["low"], data["close"], data["volume"], data["trade_count"],
        strict=True)]


MINUTES = [(us("2013-10-07T13:30:00+00:00"), 168.10, 168.40, 168.10, 168.40, 300.0, 2),
           (us("2013-10-07T13:31:00+00:00"), 168.20, 168.20, 168.20, 168.20, 300.0, 1)]


def store_ticks(client, series, django_capture_on_commit_callbacks, monkeypatch) -> list:
    """POSTs TICKS and runs the batch's after-commit hooks; returns the rollup refreshes queued
    (recorded instead of sent to Celery: the worker's part is played by the test)."""
    queued = []
    monkeypatch.setattr(tasks.refresh_pending_rollups, "apply_async",
                        lambda args, countdown: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/api/v1/series/{series.pk}/points/", TICKS, format="json")
    assert r.status_code == 201, r.content
    return queued


def test_the_refresh_a_batch_wakes_takes_its_queued_span(alice_client, spy, django_capture_on_commit_callbacks,
                                                         monkeypatch):
    queued = store_ticks(alice_client, spy, django_capture_on_commit_callbacks, monkeypatch)
    kept = ROLLUPS.get(series=spy)  # committed with the points, before any refresh
    assert (kept.organization_id, kept.start_us, kept.end_us) == (
        spy.organization_id, us("2013-10-07T13:30:00.001+00:00"), us("2013-10-07T13:31:05+00:00"))
    assert queued == [(spy.organization_id,)]
    assert tasks.refresh_pending_rollups.run(*queued[0]) == 1  # the worker
    assert minute_rollups(spy) == MINUTES and not ROLLUPS.exists()
    assert tasks.sweep_rollups(older_than_seconds=0) == 0 and count_rows("watchlists_tick", spy.pk) == 3


def test_a_burst_of_batches_sends_one_wake_up_until_the_run_starts(alice_client, spy, monkeypatch,
                                                                   django_capture_on_commit_callbacks):
    queued = store_ticks(alice_client, spy, django_capture_on_commit_callbacks, monkeypatch)
    queued += store_ticks(alice_client, spy, django_capture_on_commit_callbacks, monkeypatch)
    assert queued == [(spy.organization_id,)] and ROLLUPS.count() == 2
    pending.woken(pending.ROLLUPS, spy.organization_id)  # the run starts: the next batch wakes another
    queued += store_ticks(alice_client, spy, django_capture_on_commit_callbacks, monkeypatch)
    assert queued == [(spy.organization_id,)] * 2


def test_rollups_not_woken_while_redis_is_down_are_built_by_the_sweep(
        alice_client, spy, settings, caplog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        r = alice_client.post(f"/api/v1/series/{spy.pk}/points/", TICKS, format="json")
    assert r.status_code == 201, r.content
    working = settings.CACHES
    settings.CACHES = REDIS_DOWN
    for callback in callbacks:
        callback()  # the batch's hooks, with Redis unreachable
    assert "rollups not queued" in caplog.text
    assert ROLLUPS.filter(series=spy).exists() and minute_rollups(spy) == []

    settings.CACHES = working  # Redis is back; the beat's sweep runs
    assert tasks.sweep_rollups() == 0  # too soon: the wake-up may still be on its way
    ROLLUPS.update(created_at=timezone.now() - timedelta(seconds=tasks.rollup_delay() + tasks.SWEEP_GRACE_SECONDS + 1))
    assert tasks.sweep_rollups() == 1  # queued the organization's refresh; eager here, so it ran
    assert minute_rollups(spy) == MINUTES and not ROLLUPS.exists()


def test_a_refresh_that_fails_keeps_its_series_queued_and_the_others_go_on(org_a, spy, monkeypatch, caplog):
    qqq, iwm = (SeriesFactory(organization=org_a, symbol=s, kind="trade") for s in ("QQQ", "IWM"))
    pending.add(org_a.pk, {spy.pk: (1, 2), qqq.pk: (3, 4), iwm.pk: (5, 6)}, purposes=(pending.ROLLUPS,))
    refreshed, queued = [], []

    def refresh(series, lo, hi):
        if series.pk == qqq.pk:
            raise ValueError("a bug in one series' refresh")
        refreshed.append(series.pk)

    monkeypatch.setattr(tasks.rollups, "refresh_rollups", refresh)
    monkeypatch.setattr(tasks.refresh_pending_rollups, "apply_async", lambda args, countdown: queued.append(args))
    assert tasks.refresh_pending_rollups.run(org_a.pk) == 2
    assert refreshed == [spy.pk, iwm.pk] and f"rollup refresh of series {qqq.pk}" in caplog.text
    assert list(ROLLUPS.values_list("series_id", "start_us", "end_us")) == [(qqq.pk, 3, 4)]
    assert queued == []  # left to the sweep: an error that repeats does not spin


def test_a_refresh_whose_database_goes_away_leaves_every_series_queued(org_a, spy, monkeypatch):
    qqq = SeriesFactory(organization=org_a, symbol="QQQ", kind="trade")
    pending.add(org_a.pk, {spy.pk: (1, 2), qqq.pk: (3, 4)}, purposes=(pending.ROLLUPS,))

    def refresh(series, lo, hi):  # the claim's transaction cannot go on: everything rolls back
        raise OperationalError("the database system is shutting down")

    monkeypatch.setattr(tasks.rollups, "refresh_rollups", refresh)
    with pytest.raises(OperationalError):
        tasks.refresh_pending_rollups.run(org_a.pk)
    assert sorted(ROLLUPS.values_list("series_id", "start_us")) == [(spy.pk, 1), (qqq.pk, 3)]


def test_a_run_takes_its_share_of_series_and_queues_the_rest_behind_others(org_a, org_b, settings, monkeypatch):
    settings.ROLLUP_SERIES_PER_TASK = 3
    mine = [SeriesFactory(organization=org_a, symbol=f"A{i}", kind="trade") for i in range(7)]
    theirs = SeriesFactory(organization=org_b, symbol="B", kind="trade")
    pending.add(org_a.pk, {s.pk: (i, i + 1) for i, s in enumerate(mine)}, purposes=(pending.ROLLUPS,))
    pending.add(org_b.pk, {theirs.pk: (0, 1)}, purposes=(pending.ROLLUPS,))
    refreshed, queued = [], []
    monkeypatch.setattr(tasks.rollups, "refresh_rollups", lambda series, lo, hi: refreshed.append(series.pk))
    monkeypatch.setattr(tasks.refresh_pending_rollups, "apply_async", lambda args, countdown: queued.append(args))
    broker = [(org_a.pk,), (org_b.pk,)]  # both woken by their batches
    while broker:
        (organization_id,) = broker.pop(0)
        tasks.refresh_pending_rollups.run(organization_id)
        broker += queued
        queued.clear()
    # A's seven series took three turns; B's one ran after A's first, not after all of A's.
    assert refreshed == [*(s.pk for s in mine[:3]), theirs.pk, *(s.pk for s in mine[3:])]
    assert not ROLLUPS.exists()


def test_a_run_out_of_time_commits_what_it_refreshed_and_queues_the_rest(org_a, spy, monkeypatch):
    qqq, iwm = (SeriesFactory(organization=org_a, symbol=s, kind="trade") for s in ("QQQ", "IWM"))
    pending.add(org_a.pk, {spy.pk: (1, 2), qqq.pk: (3, 4), iwm.pk: (5, 6)}, purposes=(pending.ROLLUPS,))
    refreshed, queued = [], []

    def refresh(series, lo, hi):  # Celery's soft time limit strikes during the second series
        if series.pk == qqq.pk:
            raise SoftTimeLimitExceeded()
        refreshed.append(series.pk)

    monkeypatch.setattr(tasks.rollups, "refresh_rollups", refresh)
    monkeypatch.setattr(tasks.refresh_pending_rollups, "apply_async", lambda args, countdown: queued.append(args))
    assert tasks.refresh_pending_rollups.run(org_a.pk) == 1 and refreshed == [spy.pk]
    assert sorted(ROLLUPS.values_list("series_id", flat=True)) == [qqq.pk, iwm.pk]
    assert queued == [(org_a.pk,)]
