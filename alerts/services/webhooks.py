"""Webhook endpoints: created with a fresh secret (shown once), rotated with an overlap, tested."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts import audit
from accounts.tenancy import Actor

from .. import signing
from ..models import Channel, Notification, WebhookEndpoint
from ..transports.webhook import check_destination

ROTATION_OVERLAP = timedelta(hours=24)


def create_endpoint(*, actor: Actor, url: str, description: str = "", enabled: bool = True) -> WebhookEndpoint:
    """Refuses unsafe URLs up front (the guard runs again on every send: DNS can change)."""
    actor.require("manage")
    check_destination(url)
    endpoint = WebhookEndpoint.objects.create(organization_id=actor.organization_id, url=url,
                                              description=description, enabled=enabled, secret=signing.new_secret(),
                                              created_by=actor.credited_user)
    audit.record(action="webhook.created", actor=actor, target=endpoint, details={"enabled": enabled})
    return endpoint


def update_endpoint(*, actor: Actor, endpoint: WebhookEndpoint, **fields) -> WebhookEndpoint:
    actor.require("manage")
    if "url" in fields:
        check_destination(fields["url"])
    for name, value in fields.items():
        setattr(endpoint, name, value)
    if fields.get("enabled"):  # re-enabling starts a fresh failure run
        endpoint.failure_count, endpoint.disabled_at, endpoint.disabled_reason = 0, None, ""
    endpoint.save()
    audit.record(action="webhook.updated", actor=actor, target=endpoint, details={"fields": sorted(fields)})
    return endpoint


def delete_endpoint(*, actor: Actor, endpoint: WebhookEndpoint) -> None:
    actor.require("manage")
    audit.record(action="webhook.deleted", actor=actor, target=endpoint)
    endpoint.delete()


@transaction.atomic
def rotate_secret(*, actor: Actor, endpoint: WebhookEndpoint, now=None) -> WebhookEndpoint:
    """New secret; the old one keeps signing (next to the new one) for ROTATION_OVERLAP."""
    actor.require("manage")
    now = now or timezone.now()
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.previous_secret, endpoint.previous_secret_expires_at = endpoint.secret, now + ROTATION_OVERLAP
    endpoint.secret = signing.new_secret()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    audit.record(action="webhook.secret_rotated", actor=actor, target=endpoint)
    return endpoint


def signing_secrets(endpoint: WebhookEndpoint, now=None) -> list[str]:
    now = now or timezone.now()
    keep_old = endpoint.previous_secret and endpoint.previous_secret_expires_at and \
        endpoint.previous_secret_expires_at > now
    return [endpoint.secret, endpoint.previous_secret] if keep_old else [endpoint.secret]


def test_send(*, actor: Actor, endpoint: WebhookEndpoint) -> Notification:
    """Queues a "webhook.test" notification through the normal outbox (so it is logged)."""
    actor.require("manage")
    from .delivery import deliver_now

    now = timezone.now()
    notification = Notification.objects.create(
        organization_id=actor.organization_id, idempotency_key=f"test:{endpoint.pk}:{now.timestamp()}",
        kind=Notification.Kind.TEST, channel=Channel.WEBHOOK, endpoint=endpoint, event_ts=now, due_at=now,
        user=actor.credited_user)
    return deliver_now(notification)
