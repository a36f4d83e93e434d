"""The receiver of detection's anomalies_detected: what it queues, and that the usual pass needs no query."""

import pytest
from django.utils import timezone

from alerts.receivers import dispatch_detected
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


def _produced(anomaly):
    """The pipeline's unsaved instance of a stored anomaly (a replay produces these again)."""
    return Anomaly(organization_id=anomaly.organization_id, series_id=anomaly.series_id, ts=anomaly.ts,
                   source=anomaly.source, metric_index=anomaly.metric_index, text=anomaly.text)


def test_rows_the_pipeline_created_are_queued_without_a_query(org_a, queued, django_assert_num_queries):
    series = SeriesFactory(organization=org_a, kind="metric", exchange="", bar_seconds=None)
    rows = [_anomaly(org_a, series, 0), _anomaly(org_a, series, 1)]
    with django_assert_num_queries(0):
        dispatch_detected(sender=Anomaly, organization_id=org_a.pk, anomalies=rows, created=rows)
    assert queued == [(org_a.pk, sorted(a.pk for a in rows))]


def test_keys_the_pipeline_did_not_create_are_looked_up(org_a, queued):
    series = SeriesFactory(organization=org_a, kind="metric", exchange="", bar_seconds=None)
    replayed, new = _anomaly(org_a, series, 0), _anomaly(org_a, series, 1)  # the first from a run that died
    other = SeriesFactory(organization=org_a, kind="metric", exchange="", bar_seconds=None)
    elsewhere = _anomaly(org_a, other, 0)  # another series of the chunk, same key otherwise
    dispatch_detected(sender=Anomaly, organization_id=org_a.pk, anomalies=[_produced(replayed), new],
                      created=[new])
    dispatch_detected(sender=Anomaly, organization_id=org_a.pk, anomalies=[_produced(replayed),
                                                                           _produced(elsewhere)], created=[])
    assert queued == [(org_a.pk, sorted([replayed.pk, new.pk])), (org_a.pk, sorted([replayed.pk, elsewhere.pk]))]
