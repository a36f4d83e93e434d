"""Alerts factories; registered for the cross-tenant walker."""

from django.utils import timezone

from alerts import signing
from alerts.models import AlertSubscription, Notification, WebhookEndpoint
from tests.factories import TENANT_FACTORIES, MembershipFactory, UserFactory


def endpoint_for(org, url="http://127.0.0.1:9/hook", **kw) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(organization=org, url=url, secret=signing.new_secret(), **kw)


def subscription_for(org, user=None, **kw) -> AlertSubscription:
    if user is None:
        user = MembershipFactory(organization=org, user=UserFactory()).user
    kw.setdefault("channels", ["email"])
    return AlertSubscription.objects.create(organization=org, user=user, **kw)


def notification_for(org) -> Notification:
    sub = subscription_for(org)
    now = timezone.now()
    return Notification.objects.create(organization=org, idempotency_key=f"f:{sub.pk}:{now.timestamp()}",
                                       subscription=sub, user=sub.user, channel="email", email=sub.user.email,
                                       due_at=now, status=Notification.Status.SENT)


TENANT_FACTORIES.update({
    AlertSubscription: lambda org: subscription_for(org),
    WebhookEndpoint: lambda org: endpoint_for(org),
    Notification: notification_for,
})
