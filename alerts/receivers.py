"""Alerts' receivers, connected by AlertsConfig.ready() importing this module."""

import logging

from django.dispatch import receiver

from detection.models import Anomaly
from detection.signals import anomalies_detected

from .tasks import dispatch

logger = logging.getLogger(__name__)


@receiver(anomalies_detected, dispatch_uid="alerts.anomalies_detected")
def dispatch_detected(sender, organization_id, anomalies, created, **kwargs):
    """Runs after detection's commit: queues alerts.dispatch for the anomalies' ids.

    When the transaction created every anomaly it produced (the usual case) their ids are at hand,
    no query. Anomalies stored before (a replayed chunk) are looked up, so an anomaly committed by
    a run that died before queueing its dispatch is dispatched now, not by the sweep.

    A failure to queue is logged, not raised: detection must not fail because of alerts, and
    alerts.sweep dispatches anomalies that were never claimed."""
    try:
        ids = {anomaly.pk for anomaly in created}
        if len(ids) < len(anomalies):
            wanted = {(a.series_id, a.ts, a.source, a.metric_index) for a in anomalies}
            rows = Anomaly.objects.filter(organization_id=organization_id,
                                          series_id__in={a.series_id for a in anomalies},
                                          ts__in={a.ts for a in anomalies}
                                          ).values_list("pk", "series_id", "ts", "source", "metric_index")
            ids |= {pk for pk, *key in rows if tuple(key) in wanted}
        if ids:
            dispatch.delay(organization_id, sorted(ids))
    except Exception:
        # With tasks in process (embedded mode) the dispatch itself ran here and failed; either way
        # alerts.sweep dispatches the anomalies again once they are a minute old.
        logger.exception("alerts: dispatch not queued, or failed in process, for org=%s; alerts.sweep retries it",
                         organization_id)
