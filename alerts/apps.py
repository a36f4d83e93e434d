import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class AlertsConfig(AppConfig):
    name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from detection.signals import anomalies_detected

        from . import lifecycle  # noqa: F401  (blanks a deleted user's address in the delivery log)

        anomalies_detected.connect(on_anomalies_detected, dispatch_uid="alerts.on_anomalies_detected", weak=False)


def on_anomalies_detected(sender, organization_id, series_id, anomaly_keys=(), created=None, **kwargs):
    """Runs after detection's commit: resolves the keys to ids and queues alerts.dispatch.

    The pipeline passes the rows it created, with ids: when they are every key (the usual case),
    no query is needed. Keys it did not create (a replayed chunk) are looked up, so an anomaly
    committed by a run that died before queueing its dispatch is dispatched now, not by the sweep.

    A failure to queue is logged, not raised: detection must not fail because of alerts, and
    alerts.sweep dispatches anomalies that were never claimed."""
    from detection.models import Anomaly

    from .tasks import dispatch

    try:
        wanted = {(ts, source, metric) for ts, source, metric in anomaly_keys}
        if created is not None and len(created) == len(wanted):
            ids = [anomaly.pk for anomaly in created]
        else:
            rows = Anomaly.objects.filter(organization_id=organization_id, series_id=series_id,
                                          ts__in={k[0] for k in wanted}).values_list("pk", "ts", "source",
                                                                                     "metric_index")
            ids = [pk for pk, ts, source, metric in rows if (ts, source, metric) in wanted]
        if ids:
            dispatch.delay(organization_id, ids)
    except Exception:
        # With tasks in process (embedded mode) the dispatch itself ran here and failed; either way
        # alerts.sweep dispatches the anomalies again once they are a minute old.
        logger.exception("alerts: dispatch not queued, or failed in process, for org=%s series=%s; alerts.sweep "
                         "retries it", organization_id, series_id)
