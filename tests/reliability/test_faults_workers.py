"""Celery workers SIGKILLed during detection, training and alert delivery: after a restart (and
the beat sweeps) the work completes, and nothing is stored or delivered twice.

Detection and delivery reuse the crash tests of their apps (tests/detection/test_worker_crash.py,
tests/alerts/test_worker_crash.py) and add their figures to the report; they run in `make test`
already, so here they are marked slow."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from accounts.tenancy import system_actor
from alerts.models import DeliveryAttempt, Notification
from detection.models import Anomaly, Detector, ModelVersion, Rule, TrainingRun
from detection.services import detectors as detector_services
from detection.services.rules import backtest
from detection.tasks import requeue_orphaned_training
from tests.alerts.conftest import receiver  # noqa: F401 — the fixture the delivery crash test needs
from tests.alerts.test_worker_crash import (
    test_worker_killed_mid_dispatch_delivers_once_after_restart as delivery_crash,
)
from tests.detection import test_worker_crash as detection_crash_module
from tests.factories import OrganizationFactory, SeriesFactory
from tests.watchlists.test_rollup_crash import (
    test_a_worker_killed_mid_refresh_loses_no_rollup as rollup_crash,
)
from tests.workers import Worker, queued_for_real, wait_for, worker_env
from watchlists import importer
from watchlists.demo import DATA

from .report import record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


def _missing_and_extra(expected, actual) -> tuple[int, int]:
    """(expected items absent from actual, items of actual beyond the expected: extra or twice)."""
    want, got = Counter(expected), Counter(actual)
    return sum((want - got).values()), sum((got - want).values())


def test_detection_worker_sigkilled_mid_stream(clean_store):
    try:
        detection_crash_module.test_sigkilled_worker_resumes_without_gap_or_duplicate(clean_store)
    finally:
        # Measured whatever the scenario concluded: a failing run's row shows what went wrong.
        rule = Rule.objects.first()
        if rule is not None:
            _record_detection(rule)


def _record_detection(rule: Rule) -> None:
    expected = backtest(actor=system_actor(rule.organization_id), rule=rule,
                        start=datetime(2020, 1, 1, tzinfo=UTC), end=datetime(2021, 1, 1, tzinfo=UTC))
    want = [(a["ts"], a["metric_index"]) for a in expected["anomalies"]]
    got = [(ts.isoformat(), metric) for ts, metric in Anomaly.objects.values_list("ts", "metric_index")]
    missing, extra = _missing_and_extra(want, got)
    published = Anomaly.objects.exclude(published_at=None).count()
    record("Faults", "Celery worker SIGKILLed during detection (40,000 points streamed)",
           sent=detection_crash_module.N_POINTS, stored=len(got), delivered=published,
           lost=missing + len(got) - published, duplicates=extra,
           notes=f"against an uninterrupted backtest of the same rule ({len(want)} anomalies): {missing} "
                 f"missing, {extra} extra or stored twice; {len(got) - published} stored but never published "
                 "to the live feed (the outbox, after the restart and detection.sweep)")


def test_alerts_worker_sigkilled_mid_delivery(receiver):  # noqa: F811
    try:
        delivery_crash(receiver)
    finally:
        notifications = Notification.objects.count()
        successes = DeliveryAttempt.objects.filter(outcome="success").count()
        ids = [r["headers"]["webhook-id"] for r in receiver.requests]
        record("Faults", "Celery worker SIGKILLed during alert dispatch (mid-delivery)", sent=1,
               stored=notifications, delivered=len(set(ids)), lost=max(0, notifications - len(set(ids))),
               # Another message id for the same notification, or a second success in the log.
               duplicates=max(0, len(set(ids)) - notifications) + max(0, successes - notifications),
               notes=f"{DeliveryAttempt.objects.count()} delivery attempt(s) logged, {successes} success; the "
                     f"receiver saw {len(ids)} requests with {len(set(ids))} webhook-id(s) (at-least-once: the "
                     "crash fell between send and commit; receivers dedupe by webhook-id); a redelivered dispatch "
                     "task wrote nothing")


def test_rollup_worker_sigkilled_mid_refresh(settings, clean_store):
    try:
        rollup_crash(settings, clean_store)
    finally:
        # Per minute: the ticks stored against the trade count of its 1-minute rollup (none: 0).
        with connection.cursor() as cursor:
            cursor.execute("SELECT date_trunc('minute', t.ts), count(*), max(r.trade_count) FROM watchlists_tick t "
                           "LEFT JOIN watchlists_rollup r ON r.series_id = t.series_id AND r.resolution = 60 "
                           "AND r.ts = date_trunc('minute', t.ts) GROUP BY 1")
            minutes = [(ticks, counted or 0) for _, ticks, counted in cursor.fetchall()]
        stored = sum(ticks for ticks, _ in minutes)
        counted = sum(c for _, c in minutes)
        record("Faults", "Celery worker SIGKILLed during a rollup refresh", sent=6, stored=stored, delivered=counted,
               lost=sum(max(0, ticks - c) for ticks, c in minutes),
               duplicates=sum(max(0, c - ticks) for ticks, c in minutes),
               notes=f"ticks stored against ticks counted in their 1-minute rollups ({len(minutes)} minutes, "
                     f"{sum(1 for _, c in minutes if c)} with a rollup). Killed while its refresh of the first "
                     "minute (4 ticks) waited on a locked rollup table; the restarted worker's next refresh of the "
                     "series (a batch in a later minute) took the dead run's span too")


def _progress(run_id: int) -> tuple[str, float]:
    run = TrainingRun.objects.get(pk=run_id)
    return run.status, run.progress


def test_training_worker_sigkilled_mid_fit_is_taken_over_once(clean_store):
    org = OrganizationFactory()
    series = SeriesFactory(organization=org, symbol="IBM", kind="bar", exchange="XNYS", bar_seconds=60)
    importer.import_csv(actor=system_actor(org.pk), series=series, path=DATA / "minute/IBM.csv")
    # The default fit (5 epochs) runs for 5-20 s here: the kill lands inside it.
    detector = Detector.objects.create(organization=org, series=series, kind="lstm_forecast")
    env = worker_env()
    with queued_for_real():
        first = Worker("train", env)
        try:
            run = detector_services.request_training(actor=system_actor(org.pk), detector=detector)
            wait_for(lambda: _progress(run.pk) == ("running", 0.1), 120, message="the fit to start")
            time.sleep(1.0)
            assert _progress(run.pk) == ("running", 0.1), "the fit ended before the kill; give it more epochs"
            first.kill()
        finally:
            first.stop()
        assert Detector.objects.get(pk=detector.pk).status == "training"
        # Without a takeover the run would stay "running" forever and block every later request.
        assert detector_services.request_training(actor=system_actor(org.pk), detector=detector).pk == run.pk

        second = Worker("train", env)
        try:
            started = time.monotonic()
            # What detection.sweep does each minute, with the heartbeat deadline (90 s) already past.
            assert requeue_orphaned_training(stale_after=timedelta(0)) == 1
            wait_for(lambda: _progress(run.pk)[0] not in ("queued", "running"), 240,
                     message="the taken-over run to finish")
            took = time.monotonic() - started
            assert requeue_orphaned_training(stale_after=timedelta(0)) == 0  # nothing left to take over
        finally:
            second.stop()
    run.refresh_from_db()
    versions = ModelVersion.objects.filter(detector=detector).count()
    record("Faults", "Celery worker SIGKILLed during training (lstm_forecast fit)", sent=1,
           stored=versions, delivered=int(run.status == "succeeded"), lost=int(run.status != "succeeded"),
           duplicates=max(0, versions - 1),
           notes=f"run taken over by a new worker via detection.sweep (heartbeat stopped) and finished in "
                 f"{took:.0f} s as {run.status}; one model version, one run")
    assert run.status == "succeeded" and versions == 1
    assert TrainingRun.objects.filter(detector=detector).count() == 1
    assert Detector.objects.get(pk=detector.pk).status == "ready"
