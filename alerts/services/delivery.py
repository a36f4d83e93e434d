"""Delivery: claim an outbox row, send it, record the attempt, schedule a retry or finish.

At-least-once to the provider (a crash between the send and the commit resends the same body
with the same webhook-id), exactly-once in the log (an attempt row is written once per claim).
Transient failures (network, timeout, 429, 5xx) retry with exponential backoff and jitter,
honouring Retry-After, for up to 24 hours; permanent ones (other 4xx, unsafe URL) stop at once.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.tenancy import is_active_member

from ..metrics import DELIVERIES
from ..models import Channel, DeliveryAttempt, Notification, WebhookEndpoint
from ..transports import email as email_transport
from ..transports import webhook as webhook_transport
from ..transports.base import Sent, TransportError
from . import render
from .webhooks import signing_secrets

logger = logging.getLogger(__name__)
BACKOFF_BASE_SECONDS = 10
BACKOFF_CAP_SECONDS = 3600
RETRY_FOR = timedelta(hours=24)
STALE_SENDING = timedelta(minutes=5)
MAX_RETRY_AFTER_SECONDS = 6 * 3600


@dataclass
class Outcome:
    status: str  # skipped | sent | retry | failed
    retry_in: float | None = None


def backoff_seconds(attempt: int, retry_after: float | None = None, rand=random.random) -> float:
    """Exponential backoff with "equal jitter" (half fixed, half random), never sooner than the
    receiver's Retry-After (capped, so a hostile value cannot park a row forever)."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    delay = ceiling / 2 + rand() * ceiling / 2
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay


def disable_after() -> int:
    return settings.WEBHOOK_DISABLE_AFTER


def enqueue(notifications, now: datetime | None = None, inline: int = 0) -> None:
    """Queues deliveries. `inline`: send up to that many due rows in this process first (the
    dispatch worker), saving a queue hop on the latency path; the claim keeps it single-send."""
    from ..tasks import deliver

    now = now or timezone.now()
    for n in notifications:
        wait = (n.due_at - now).total_seconds()
        if wait <= 0 and inline > 0:
            inline -= 1
            deliver(n.pk, n.organization_id)
            continue
        # No countdown when due: an ETA task waits on the worker's timer, adding ~100 ms or more.
        deliver.apply_async((n.pk, n.organization_id), **({"countdown": wait} if wait > 0 else {}))


def deliver_now(notification: Notification) -> Notification:
    transaction.on_commit(lambda: enqueue([notification]))
    return notification


def _send(n: Notification, now: datetime) -> Sent:
    if n.channel == Channel.EMAIL:
        if not is_active_member(n.user_id, n.organization_id):  # left, deactivated or deleted since it was planned
            raise TransportError("The recipient is no longer an active member of the organization; not sent.",
                                 permanent=True)
        subject, text, html = render.email_for(n.payload)
        return email_transport.send_email(to=n.email, subject=subject, text=text, html=html,
                                          custom_args={"notification": render.message_id(n)})
    endpoint = n.endpoint
    if endpoint is None or not endpoint.enabled:
        raise TransportError("The webhook endpoint is disabled or was deleted.", permanent=True)
    return webhook_transport.post(endpoint.url, body=webhook_transport.body_of(n.payload),
                                  msg_id=render.message_id(n), secrets=signing_secrets(endpoint, now))


def deliver_notification(*, notification_id: int, organization_id: int, now: datetime | None = None,
                         rand=random.random) -> Outcome:
    """Sends one due notification if this call wins the claim; otherwise does nothing."""
    now = now or timezone.now()
    claimed = Notification.objects.filter(
        pk=notification_id, organization_id=organization_id, status=Notification.Status.PENDING, due_at__lte=now,
    ).update(status=Notification.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1,
             first_attempt_at=Coalesce(F("first_attempt_at"), Value(now)))
    if not claimed:
        return Outcome("skipped")
    n = Notification.objects.select_related("endpoint", "subscription", "user").get(pk=notification_id)
    if not n.payload:  # dispatch renders final messages itself; groups are rendered here, once
        n.payload = render.payload_for(n, now)
        n.save(update_fields=["payload"])
    started = time.perf_counter()
    try:
        sent, error = _send(n, now), None
    except TransportError as exc:
        sent, error = None, exc
    latency_ms = (time.perf_counter() - started) * 1000
    return _finish(n, now, sent, error, latency_ms, rand)


def _finish(n: Notification, now, sent: Sent | None, error: TransportError | None, latency_ms, rand) -> Outcome:
    result = _record(n, now, sent, error, latency_ms, rand)
    DELIVERIES.labels(n.channel, result.status).inc()  # sent | retry | failed
    return result


@transaction.atomic
def _record(n: Notification, now, sent: Sent | None, error: TransportError | None, latency_ms, rand) -> Outcome:
    outcome = DeliveryAttempt.Outcome.SUCCESS if error is None else (
        DeliveryAttempt.Outcome.PERMANENT if error.permanent else DeliveryAttempt.Outcome.TRANSIENT)
    DeliveryAttempt.objects.create(
        organization_id=n.organization_id, notification=n, number=n.attempts, outcome=outcome,
        status_code=(sent.status_code if sent else error.status_code), latency_ms=latency_ms,
        response_excerpt=(sent.excerpt if sent else error.excerpt), error=error.message[:1000] if error else "")
    mine = Notification.objects.filter(pk=n.pk, status=Notification.Status.SENDING, claimed_at=n.claimed_at)
    if error is None:
        mine.update(status=Notification.Status.SENT, sent_at=now, last_error="")
        _endpoint_result(n, now, ok=True)
        return Outcome("sent")
    _endpoint_result(n, now, ok=False, error=error)
    delay = backoff_seconds(n.attempts, error.retry_after, rand)
    if error.permanent or now + timedelta(seconds=delay) > n.first_attempt_at + RETRY_FOR:
        mine.update(status=Notification.Status.FAILED, last_error=error.message[:1000])
        logger.warning("notification %s failed for good: %s", n.pk, error.message)
        return Outcome("failed")
    mine.update(status=Notification.Status.PENDING, due_at=now + timedelta(seconds=delay),
                last_error=error.message[:1000])
    return Outcome("retry", delay)


def _endpoint_result(n: Notification, now, *, ok: bool, error: TransportError | None = None) -> None:
    if n.channel != Channel.WEBHOOK or n.endpoint_id is None:
        return
    endpoint = WebhookEndpoint.objects.filter(pk=n.endpoint_id)
    if ok:
        # The endpoint was loaded with the claim: a healthy one costs no write (the worker then
        # takes the next message sooner).
        if n.endpoint is None or n.endpoint.failure_count:
            endpoint.exclude(failure_count=0).update(failure_count=0)
        return
    endpoint.update(failure_count=F("failure_count") + 1)
    # Only the attempt that crosses the limit disables it (conditional update), so one email.
    if endpoint.filter(enabled=True, failure_count__gte=disable_after()).update(
            enabled=False, disabled_at=now, disabled_reason=f"{disable_after()} failures in a row; last: "
                                                            f"{error.message[:300]}"):
        notify_endpoint_disabled(WebhookEndpoint.objects.select_related("created_by").get(pk=n.endpoint_id), now)


def notify_endpoint_disabled(endpoint: WebhookEndpoint, now) -> None:
    owner = endpoint.created_by
    if owner is None:
        return
    n = Notification.objects.create(
        organization_id=endpoint.organization_id, idempotency_key=f"disabled:{endpoint.pk}:{now.timestamp()}",
        kind=Notification.Kind.ENDPOINT_DISABLED, channel=Channel.EMAIL, email=owner.email, user=owner,
        event_ts=now, due_at=now, detail={"endpoint": endpoint.pk, "url": endpoint.url,
                                          "reason": endpoint.disabled_reason})
    transaction.on_commit(lambda: enqueue([n]))


def replay(*, notification: Notification, actor) -> Notification:
    """Sends a logged notification again as a new outbox row with the same payload."""
    from anomalyhub.lib.errors import PermissionDeniedError

    # Replaying sends again (emails, webhooks): your own as a signed-in person, else "manage".
    if not (actor.can("manage") or actor.owns(notification.user_id)):
        raise PermissionDeniedError("You can only replay your own deliveries (signed in), or any with an admin "
                                    "role or API key.")
    now = timezone.now()
    copy = Notification.objects.create(
        organization_id=notification.organization_id, idempotency_key=f"replay:{notification.pk}:{now.timestamp()}",
        subscription_id=notification.subscription_id, user_id=notification.user_id, kind=notification.kind,
        channel=notification.channel, endpoint_id=notification.endpoint_id, email=notification.email,
        message_key=notification.message_key, event_ts=notification.event_ts, anomaly_ids=notification.anomaly_ids,
        series_ids=notification.series_ids, detail=notification.detail, payload=notification.payload,
        due_at=now, replay_of=notification)
    return deliver_now(copy)


def sweep(now: datetime | None = None, stale_after: timedelta = STALE_SENDING) -> dict:
    """Beat safety net: frees rows whose worker died while sending, re-enqueues due rows, and
    dispatches anomalies whose dispatch task was lost."""
    now = now or timezone.now()
    freed = Notification.objects.filter(status=Notification.Status.SENDING, claimed_at__lt=now - stale_after
                                        ).update(status=Notification.Status.PENDING, due_at=now)
    due = list(Notification.objects.filter(status=Notification.Status.PENDING, due_at__lte=now)
               .only("pk", "organization_id", "due_at")[:5000])
    enqueue(due, now)
    return {"freed": freed, "enqueued": len(due)}
