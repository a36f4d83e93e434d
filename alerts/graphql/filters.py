"""Filters for alerts' list fields; they narrow an already scoped queryset."""

import strawberry_django
from strawberry import auto

from ..models import AlertSubscription, Notification, WebhookEndpoint


@strawberry_django.filter_type(AlertSubscription)
class AlertSubscriptionFilter:
    target: auto
    enabled: auto
    series_id: auto
    watchlist_id: auto


@strawberry_django.filter_type(WebhookEndpoint)
class WebhookEndpointFilter:
    enabled: auto


@strawberry_django.filter_type(Notification)
class DeliveryFilter:
    status: auto
    channel: auto
    kind: auto
    subscription_id: auto
