from datetime import timedelta

from alerts.models import Notification
from alerts.services.dispatch import dispatch_anomalies
from tests.factories import AnomalyFactory


def anomalies(org, series, times, **kw):
    return [AnomalyFactory(organization=org, series=series, ts=t, source="rule:0", metric_index=0, **kw)
            for t in times]


def dispatch(org, rows, now=None):
    return dispatch_anomalies(organization_id=org.pk, anomaly_ids=[a.pk for a in rows], now=now)


def messages(sub, kind=None):
    qs = Notification.objects.filter(subscription=sub)
    if kind:
        qs = qs.filter(kind=kind)
    return sorted(set(qs.values_list("message_key", flat=True)))


def every(start, step_seconds, n):
    return [start + timedelta(seconds=step_seconds * i) for i in range(n)]
