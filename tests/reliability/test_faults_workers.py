"""Celery workers SIGKILLed during detection, training and alert delivery: after a restart (and
the beat sweeps) the work completes, and nothing is stored or delivered twice.

Detection and delivery reuse the crash tests of their apps (tests/detection/test_worker_crash.py,
tests/alerts/test_worker_crash.py) and add their figures to the report; they run in `make test`
already, so here they are marked slow."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import connection

from accounts.tenancy import system_actor
from alerts.models import DeliveryAttempt, Notification
from detection.models import Anomaly, Detector, ModelVersion, TrainingRun
from detection.services import detectors as detector_services
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


def test_detection_worker_sigkilled_mid_stream(clean_store):
    detection_crash_module.test_sigkilled_worker_resumes_without_gap_or_duplicate(clean_store)
    # The scenario asserted equality with an uninterrupted backtest; these are its figures.
    stored = Anomaly.objects.count()
    published = Anomaly.objects.exclude(published_at=None).count()
    record("Faults", "Celery worker SIGKILLed during detection (40,000 points streamed)",
           sent=detection_crash_module.N_POINTS, stored=stored, delivered=published, lost=0, duplicates=0,
           notes="anomalies equal an uninterrupted backtest of the same rule; every one published to the live "
                 "feed (outbox) after the restart and detection.sweep")


def test_alerts_worker_sigkilled_mid_delivery(receiver):  # noqa: F811
    delivery_crash(receiver)
    attempts = DeliveryAttempt.objects.count()
    ids = [r["headers"]["webhook-id"] for r in receiver.requests]
    record("Faults", "Celery worker SIGKILLed during alert dispatch (mid-delivery)", sent=1,
           stored=Notification.objects.count(), delivered=len(set(ids)), lost=1 - len(set(ids)), duplicates=0,
           notes=f"{attempts} delivery attempt logged; the receiver saw {len(ids)} requests with one webhook-id "
                 "(at-least-once: the crash fell between send and commit; receivers dedupe by webhook-id); "
                 "a redelivered dispatch task wrote nothing")


def test_rollup_worker_sigkilled_mid_refresh(settings, clean_store):
    rollup_crash(settings, clean_store)
    with connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT count(*) FROM watchlists_tick), "
                       "(SELECT count(*) FROM watchlists_rollup WHERE resolution = 60)")
        ticks, minutes = cursor.fetchone()
    record("Faults", "Celery worker SIGKILLed during a rollup refresh", sent=6, stored=ticks, delivered=minutes,
           lost=2 - minutes, duplicates=0,
           notes="killed while its refresh of the first minute (4 ticks) waited on a locked rollup table; the "
                 "restarted worker's next refresh of the series (a batch in a later minute) took the dead run's "
                 "span too: both 1-minute rollups written, OHLC and trade count equal to the ticks")


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
