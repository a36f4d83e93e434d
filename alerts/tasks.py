"""Alerts-queue tasks. Arguments are ids; each task is idempotent (see services.dispatch/delivery)."""

from datetime import timedelta

from celery import shared_task
from django.db.models import Exists, OuterRef
from django.utils import timezone

from detection.models import Anomaly

from .models import DispatchedAnomaly
from .services import delivery
from .services import dispatch as dispatch_service

LOST_DISPATCH_AFTER = timedelta(seconds=60)
LOST_DISPATCH_HORIZON = timedelta(days=1)


@shared_task(name="alerts.dispatch", acks_late=True, soft_time_limit=120, time_limit=150)
def dispatch(organization_id: int, anomaly_ids: list[int]) -> int:
    """Plans notifications for new anomalies. Re-running it is harmless: anomalies are claimed once."""
    return dispatch_service.dispatch_anomalies(organization_id=organization_id, anomaly_ids=anomaly_ids)


@shared_task(name="alerts.deliver", acks_late=True, soft_time_limit=60, time_limit=90)
def deliver(notification_id: int, organization_id: int) -> str:
    """Sends one outbox row if due and unclaimed. The retry time lives on the row (due_at); the
    delayed task below is the fast path and alerts.sweep the safety net."""
    outcome = delivery.deliver_notification(notification_id=notification_id, organization_id=organization_id)
    if outcome.retry_in is not None:
        deliver.apply_async((notification_id, organization_id), countdown=outcome.retry_in)
    return outcome.status


@shared_task(name="alerts.sweep", soft_time_limit=120, time_limit=150)
def sweep() -> dict:
    """Beat (every 30 s): lost dispatches, stale sends, due retries and groups, quiet incidents."""
    now = timezone.now()
    lost = (Anomaly.objects.filter(created_at__gte=now - LOST_DISPATCH_HORIZON, created_at__lt=now - LOST_DISPATCH_AFTER)
            .filter(~Exists(DispatchedAnomaly.objects.filter(anomaly_id=OuterRef("pk"))))
            .values_list("organization_id", "pk")[:20000])
    by_org: dict[int, list[int]] = {}
    for org_id, pk in lost:
        by_org.setdefault(org_id, []).append(pk)
    for org_id, ids in by_org.items():
        dispatch.delay(org_id, ids)
    result = delivery.sweep(now)
    result["resolved"] = dispatch_service.resolve_quiet_incidents(now)
    result["lost_dispatches"] = sum(len(v) for v in by_org.values())
    return result
