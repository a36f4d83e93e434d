"""Rollups are never lost to an outage: every batch's span is committed with its points
(RollupBacklog); the refresh its Redis claim queues takes it, hands it back if it fails, and what no
refresh took (the claim or the task lost with Redis, or a refresh failing) the rollup sweep rebuilds."""

from datetime import datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import OperationalError
from django.utils import timezone

from tests.watchlists.conftest import count_rows
from watchlists import coalesce, tasks
from watchlists.models import RollupBacklog
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


def us(iso: str) -> int:
    return to_us(datetime.fromisoformat(iso))


def minute_rollups(series):
    data = reader.read_rollup(series.pk, 60, us("2013-10-07T00:00:00+00:00"), us("2013-10-08T00:00:00+00:00"))
    return [(int(ts), o, h, lo, c, v, n) for ts, o, h, lo, c, v, n in zip(
        data["ts"], data["open"], data["high"], data["low"], data["close"], data["volume"], data["trade_count"],
        strict=True)]


def test_rollups_not_queued_while_redis_is_down_are_built_by_the_sweep(
        alice_client, spy, settings, caplog, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        r = alice_client.post(f"/api/v1/series/{spy.pk}/points/", TICKS, format="json")
    assert r.status_code == 201, r.content
    working = settings.CACHES
    settings.CACHES = REDIS_DOWN
    for callback in callbacks:
        callback()  # the batch's hooks, with Redis unreachable
    assert "rollups not queued" in caplog.text
    kept = RollupBacklog.objects.get(series=spy)
    assert (kept.organization_id, kept.start_us, kept.end_us) == (
        spy.organization_id, us("2013-10-07T13:30:00.001+00:00"), us("2013-10-07T13:31:05+00:00"))
    assert minute_rollups(spy) == []

    settings.CACHES = working  # Redis is back; the beat's sweep runs
    assert tasks.sweep_rollups(older_than_seconds=0) == 1
    minute = us("2013-10-07T13:30:00+00:00")
    assert minute_rollups(spy) == [(minute, 168.10, 168.40, 168.10, 168.40, 300.0, 2),
                                   (minute + 60_000_000, 168.20, 168.20, 168.20, 168.20, 300.0, 1)]
    assert not RollupBacklog.objects.exists() and count_rows("watchlists_tick", spy.pk) == 3


def store_ticks(client, series, django_capture_on_commit_callbacks, monkeypatch) -> list:
    """POSTs TICKS and runs the batch's after-commit hooks; returns the rollup refreshes queued
    (recorded instead of sent: the worker's part is played by the test)."""
    queued = []
    monkeypatch.setattr(tasks.refresh_pending_rollups, "apply_async",
                        lambda args, countdown: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(f"/api/v1/series/{series.pk}/points/", TICKS, format="json")
    assert r.status_code == 201, r.content
    return queued


def test_the_refresh_a_batch_queues_takes_its_backlog_span(alice_client, spy, django_capture_on_commit_callbacks,
                                                            monkeypatch):
    queued = store_ticks(alice_client, spy, django_capture_on_commit_callbacks, monkeypatch)
    kept = RollupBacklog.objects.get(series=spy)  # committed with the points, before any refresh
    assert (kept.start_us, kept.end_us) == (us("2013-10-07T13:30:00.001+00:00"), us("2013-10-07T13:31:05+00:00"))
    assert queued == [([spy.pk], spy.organization_id)]
    tasks.refresh_pending_rollups.run(*queued[0])  # the worker
    assert len(minute_rollups(spy)) == 2 and not RollupBacklog.objects.exists()
    assert tasks.sweep_rollups(older_than_seconds=0) == 0


def test_rollups_whose_claim_redis_lost_are_built_by_the_sweep(alice_client, spy, django_capture_on_commit_callbacks,
                                                               monkeypatch):
    queued = store_ticks(alice_client, spy, django_capture_on_commit_callbacks, monkeypatch)
    assert queued  # ... and then Redis restarts empty: the queued refresh and the claimed span are gone
    cache.clear()
    assert claimed_spans(spy) == {spy.pk: None}
    assert tasks.sweep_rollups() == 0  # too soon: the refresh may still be on its way
    RollupBacklog.objects.filter(series=spy).update(
        updated_at=timezone.now() - timedelta(seconds=tasks.rollup_delay() + tasks.SWEEP_GRACE_SECONDS + 1))
    assert tasks.sweep_rollups() == 1
    minute = us("2013-10-07T13:30:00+00:00")
    assert minute_rollups(spy) == [(minute, 168.10, 168.40, 168.10, 168.40, 300.0, 2),
                                   (minute + 60_000_000, 168.20, 168.20, 168.20, 168.20, 300.0, 1)]
    assert not RollupBacklog.objects.exists()


def test_a_second_failure_widens_the_kept_span_and_another_organizations_series_is_refused(spy, org_b):
    assert tasks.keep_for_sweep(spy.organization_id, {spy.pk: (5_000, 9_000)})
    assert tasks.keep_for_sweep(spy.organization_id, {spy.pk: (1_000, 6_000)})
    assert tasks.keep_for_sweep(org_b.pk, {spy.pk: (0, 99_000)})  # not org B's series: nothing kept
    kept = RollupBacklog.objects.get(series=spy)
    assert (kept.start_us, kept.end_us) == (1_000, 9_000) and RollupBacklog.objects.count() == 1


def claimed_spans(*series):
    return coalesce.release(tasks.ROLLUPS, [s.pk for s in series])


def test_a_refresh_that_fails_keeps_the_spans_it_did_not_finish(org_a, spy, monkeypatch):
    from tests.factories import SeriesFactory

    qqq, iwm = (SeriesFactory(organization=org_a, symbol=s, kind="trade") for s in ("QQQ", "IWM"))
    coalesce.claim(tasks.ROLLUPS, [spy.pk, qqq.pk, iwm.pk], {spy.pk: (1, 2), qqq.pk: (3, 4), iwm.pk: (5, 6)})
    refreshed = []

    def refresh(series, lo, hi):  # PostgreSQL restarts in the middle of the second series
        if series.pk == qqq.pk:
            raise OperationalError("the database system is shutting down")
        refreshed.append(series.pk)

    monkeypatch.setattr(tasks.rollups, "refresh_rollups", refresh)
    with pytest.raises(OperationalError):
        tasks.refresh_pending_rollups.run([spy.pk, qqq.pk, iwm.pk], org_a.pk)
    assert refreshed == [spy.pk]
    assert {(b.series_id, b.start_us, b.end_us) for b in RollupBacklog.objects.all()} == {(qqq.pk, 3, 4), (iwm.pk, 5, 6)}
    assert claimed_spans(spy, qqq, iwm) == {spy.pk: None, qqq.pk: None, iwm.pk: None}  # nothing left in Redis

    monkeypatch.undo()  # the database is back: the sweep refreshes both (those series have no points)
    assert tasks.sweep_rollups(older_than_seconds=0) == 2 and not RollupBacklog.objects.exists()


def test_with_postgresql_failing_too_the_spans_go_back_to_redis_and_a_run_is_queued(org_a, spy, monkeypatch):
    coalesce.claim(tasks.ROLLUPS, [spy.pk], {spy.pk: (10, 20)})
    queued = []
    monkeypatch.setattr(tasks.refresh_pending_rollups, "apply_async",
                        lambda args, countdown: queued.append((args, countdown)))
    monkeypatch.setattr(tasks, "keep_for_sweep", lambda organization_id, spans: False)  # PostgreSQL refused them

    def refresh(series, lo, hi):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(tasks.rollups, "refresh_rollups", refresh)
    with pytest.raises(OperationalError):
        tasks.refresh_pending_rollups.run([spy.pk], org_a.pk)
    assert queued == [(([spy.pk], org_a.pk), tasks.rollup_delay())]  # after the delay, not straight away
    assert claimed_spans(spy) == {spy.pk: (10, 20)}


def test_with_both_stores_failing_the_log_says_which_spans_to_rebuild(org_a, spy, monkeypatch, settings, caplog):
    coalesce.claim(tasks.ROLLUPS, [spy.pk], {spy.pk: (10, 20)})
    monkeypatch.setattr(tasks, "keep_for_sweep", lambda organization_id, spans: False)

    def refresh(series, lo, hi):  # Redis goes away too, after the spans were taken
        settings.CACHES = REDIS_DOWN
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(tasks.rollups, "refresh_rollups", refresh)
    with pytest.raises(OperationalError):
        tasks.refresh_pending_rollups.run([spy.pk], org_a.pk)
    assert f"rollups of (series, (start µs, end µs)) [({spy.pk}, (10, 20))] are not queued anywhere" in caplog.text
