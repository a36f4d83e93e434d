"""Detection's receivers, connected by DetectionConfig.ready() importing this module."""

from django.dispatch import receiver

from watchlists.signals import batch_stored, history_imported

from .live import publish_created
from .services.history import request_for_import
from .signals import anomalies_detected
from .tasks import enqueue


@receiver(batch_stored, dispatch_uid="detection.batch_stored")
def detect_stored(sender, organization_id, spans, **kwargs):
    """Wakes detection for the work the committed batch queued (watchlists.pending)."""
    enqueue(organization_id)


@receiver(history_imported, dispatch_uid="detection.history_imported")
def detect_imported(sender, organization_id, series_id, start_us, end_us, **kwargs):
    """Imported points may lie before where live detection stands: a history run judges them."""
    request_for_import(organization_id, series_id, start_us, end_us)


@receiver(anomalies_detected, dispatch_uid="detection.live")
def publish(sender, organization_id, created, **kwargs):
    """The live feed: every anomaly the transaction created, in one publish. One lost (a worker
    that died after commit, Redis down) is left to the outbox sweep (live.publish_unpublished)."""
    publish_created(created)
