"""The receiver of detection's anomalies_detected: what it queues, and that the usual pass needs no query."""

import pytest
from django.utils import timezone

from alerts.apps import on_anomalies_detected
from detection.models import Anomaly
from tests.factories import SeriesFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    sent = []
    monkeypatch.setattr("alerts.tasks.dispatch.delay", lambda organization_id, ids: sent.append((organization_id,
                                                                                                 sorted(ids))))
    return sent


def _anomaly(org, series, metric_index):
    return Anomaly.objects.create(organization=org, series=series, ts=timezone.now(), source="rule:1",
                                  metric_index=metric_index, text="value > 65")


def _key(anomaly):
    return anomaly.ts, anomaly.source, anomaly.metric_index


def test_rows_the_pipeline_created_are_queued_without_a_query(org_a, queued, django_assert_num_queries):
    series = SeriesFactory(organization=org_a, kind="metric", exchange="", bar_seconds=None)
    rows = [_anomaly(org_a, series, 0), _anomaly(org_a, series, 1)]
    with django_assert_num_queries(0):
        on_anomalies_detected(sender=Anomaly, organization_id=org_a.pk, series_id=series.pk,
                              anomaly_keys=[_key(a) for a in rows], created=rows)
    assert queued == [(org_a.pk, sorted(a.pk for a in rows))]


def test_keys_the_pipeline_did_not_create_are_looked_up(org_a, queued):
    series = SeriesFactory(organization=org_a, kind="metric", exchange="", bar_seconds=None)
    replayed, new = _anomaly(org_a, series, 0), _anomaly(org_a, series, 1)  # the first from a run that died
    on_anomalies_detected(sender=Anomaly, organization_id=org_a.pk, series_id=series.pk,
                          anomaly_keys=[_key(replayed), _key(new)], created=[new])
    on_anomalies_detected(sender=Anomaly, organization_id=org_a.pk, series_id=series.pk,
                          anomaly_keys=[_key(replayed)])  # other senders pass keys only
    assert queued == [(org_a.pk, sorted([replayed.pk, new.pk])), (org_a.pk, [replayed.pk])]
