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
# The 30-second sweep looks back this far: a range of minutes on the created_at index. Looking back a
# day on every sweep read both tables whole (552 ms per sweep at 2 million anomalies, growing with
# them); the hourly deep sweep covers the day, for dispatches lost in a longer outage.
LOST_DISPATCH_RECENT = timedelta(minutes=15)
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
    lost = requeue_lost_dispatches(now, LOST_DISPATCH_RECENT)
    result = delivery.sweep(now)
    result["resolved"] = dispatch_service.resolve_quiet_incidents(now)
    result["lost_dispatches"] = sum(len(v) for v in lost.values())
    return result


@shared_task(name="alerts.sweep_lost_dispatches", soft_time_limit=300, time_limit=330)
def sweep_lost_dispatches() -> int:
    """Beat (hourly): dispatches lost longer ago than alerts.sweep looks, up to a day."""
    return sum(len(v) for v in requeue_lost_dispatches(timezone.now(), LOST_DISPATCH_HORIZON).values())


def requeue_lost_dispatches(now, lookback: timedelta) -> dict[int, list[int]]:
    """Queues a dispatch for each organization's anomalies created within `lookback` (and at least
    LOST_DISPATCH_AFTER ago) that no dispatch claimed; returns {organization id: anomaly ids}."""
    lost = (Anomaly.objects.filter(created_at__gte=now - lookback, created_at__lt=now - LOST_DISPATCH_AFTER)
            .filter(~Exists(DispatchedAnomaly.objects.filter(anomaly_id=OuterRef("pk"))))
            .values_list("organization_id", "pk")[:20000])
    by_org: dict[int, list[int]] = {}
    for org_id, pk in lost:
        by_org.setdefault(org_id, []).append(pk)
    for org_id, ids in by_org.items():
        dispatch.delay(org_id, ids)
    return by_org
