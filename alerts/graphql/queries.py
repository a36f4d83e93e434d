"""Alerts queries: subscriptions (own, or all for admins), webhook endpoints and the delivery log."""

from __future__ import annotations

import strawberry
import strawberry_django
from strawberry_django.pagination import OffsetPaginated

from accounts.graphql.base import by_id

from ..models import AlertSubscription, Notification, WebhookEndpoint
from .filters import AlertSubscriptionFilter, DeliveryFilter, WebhookEndpointFilter
from .types import AlertSubscriptionType, DeliveryType, WebhookEndpointType


@strawberry.type
class AlertsQuery:
    @strawberry_django.field
    def alert_subscription(self, id: strawberry.ID) -> AlertSubscriptionType | None:
        return by_id(AlertSubscription, id)

    alert_subscription_list: OffsetPaginated[AlertSubscriptionType] = strawberry_django.offset_paginated(
        filters=AlertSubscriptionFilter)

    @strawberry_django.field
    def webhook_endpoint(self, id: strawberry.ID) -> WebhookEndpointType | None:
        return by_id(WebhookEndpoint, id)

    webhook_endpoint_list: OffsetPaginated[WebhookEndpointType] = strawberry_django.offset_paginated(
        filters=WebhookEndpointFilter)

    @strawberry_django.field
    def delivery(self, id: strawberry.ID) -> DeliveryType | None:
        return by_id(Notification, id)

    delivery_list: OffsetPaginated[DeliveryType] = strawberry_django.offset_paginated(
        filters=DeliveryFilter, description="The delivery log, newest first: your own (admins: everyone's).")
