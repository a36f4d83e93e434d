"""alerts.sweep re-queues dispatches lost in the last minutes; the hourly sweep those lost up to a day ago."""

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import tasks
from alerts.models import DispatchedAnomaly
from detection.models import Anomaly
from tests.factories import SeriesFactory

pytestmark = pytest.mark.django_db


def _anomaly(org, series, age: timedelta, dispatched=False) -> int:
    anomaly = Anomaly.objects.create(organization=org, series=series, ts=timezone.now() - age, source="rule:1",
                                     text="value > 65")
    Anomaly.objects.filter(pk=anomaly.pk).update(created_at=timezone.now() - age)  # auto_now_add ignores a value
    if dispatched:
        DispatchedAnomaly.objects.create(anomaly=anomaly, organization=org)
    return anomaly.pk


def test_recent_sweep_takes_minutes_old_losses_and_the_hourly_one_the_day(org_a, org_b):
    a = SeriesFactory(organization=org_a, kind="metric", exchange="", bar_seconds=None)
    b = SeriesFactory(organization=org_b, kind="metric", exchange="", bar_seconds=None)
    minutes = _anomaly(org_a, a, timedelta(minutes=2))
    other_org = _anomaly(org_b, b, timedelta(minutes=5))
    _anomaly(org_a, a, timedelta(minutes=3), dispatched=True)
    _anomaly(org_a, a, timedelta(seconds=20))  # its dispatch may still be on its way
    hours = _anomaly(org_a, a, timedelta(hours=2))
    _anomaly(org_a, a, timedelta(days=2))  # past the horizon

    # The suite runs tasks eagerly: each dispatch re-queued below runs and claims its anomalies.
    assert tasks.sweep()["lost_dispatches"] == 2
    assert set(DispatchedAnomaly.objects.values_list("anomaly_id", flat=True)) >= {minutes, other_org}
    assert not DispatchedAnomaly.objects.filter(anomaly_id=hours).exists()  # older than the sweep looks
    assert tasks.sweep_lost_dispatches() == 1
    assert DispatchedAnomaly.objects.filter(anomaly_id=hours).exists()
    assert tasks.sweep()["lost_dispatches"] == 0 and tasks.sweep_lost_dispatches() == 0


def test_the_hourly_sweep_is_scheduled(settings):
    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert schedule["alerts.sweep_lost_dispatches"] <= 3600 and schedule["alerts.sweep"] <= 60
    assert tasks.LOST_DISPATCH_RECENT > tasks.LOST_DISPATCH_AFTER + timedelta(seconds=schedule["alerts.sweep"])
