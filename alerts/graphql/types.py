"""GraphQL types of alerts: subscriptions, webhook endpoints (never their secrets) and deliveries.

Rows are scoped to the caller's organization by TenantScoped; subscriptions and deliveries are
further narrowed to the caller's own unless it may "manage" (the same rule as REST, from
alerts.services.subscriptions.owned_by)."""

from __future__ import annotations

import strawberry
import strawberry_django
from strawberry import auto
from strawberry.scalars import JSON

from accounts.graphql.base import TenantScoped, actor_of
from accounts.graphql.types import UserType
from detection.graphql.types import DetectorType, RuleType
from watchlists.graphql.types import SeriesType, WatchlistType

from ..models import AlertSubscription, DeliveryAttempt, Notification, WebhookEndpoint
from ..services.subscriptions import owned_by


class OwnerScoped(TenantScoped):
    """TenantScoped, then only the caller's own rows unless it may manage the organization's."""

    @classmethod
    def get_queryset(cls, queryset, info, **kwargs):
        return owned_by(super().get_queryset(queryset, info, **kwargs), actor_of(info))


@strawberry_django.type(WebhookEndpoint, description="A URL that receives signed notifications. The signing "
                                                     "secret is returned only by create and rotate.")
class WebhookEndpointType(TenantScoped):
    id: auto
    url: auto
    description: auto
    enabled: auto
    failure_count: auto
    disabled_at: auto
    disabled_reason: auto
    previous_secret_expires_at: auto
    created_at: auto


@strawberry.type
class NewWebhookSecretType:
    webhook_endpoint: WebhookEndpointType
    secret: str = strawberry.field(description="The signing secret, shown this once (create and rotate only).")


@strawberry_django.type(AlertSubscription, description="What one user wants to hear about, through which "
                                                       "channels, with which noise control.")
class AlertSubscriptionType(OwnerScoped):
    id: auto
    user: UserType | None  # null once the person has left the organization
    name: auto
    target: auto
    watchlist: WatchlistType | None
    series: SeriesType | None
    rule: RuleType | None
    detector: DetectorType | None
    min_severity: auto
    channels: JSON
    webhook: WebhookEndpointType | None
    cooldown_seconds: auto
    group_window_seconds: auto
    incident_min_symbols: auto
    quiet_start: auto
    quiet_end: auto
    quiet_mode: auto
    snooze_until: auto
    session_only: auto
    notify_resolution: auto
    resolve_after_seconds: auto
    flap_threshold: auto
    flap_window_seconds: auto
    enabled: auto
    created_at: auto
    updated_at: auto


@strawberry_django.type(DeliveryAttempt)
class DeliveryAttemptType(TenantScoped):
    ordering = ("number",)

    number: auto
    outcome: auto
    status_code: auto
    latency_ms: auto
    response_excerpt: auto
    error: auto
    created_at: auto


@strawberry_django.type(Notification, description="One notification to one destination with every attempt "
                                                  "to deliver it (the delivery log).")
class DeliveryType(OwnerScoped):
    ordering = ("-pk",)

    id: auto
    idempotency_key: auto
    kind: auto
    channel: auto
    subscription: AlertSubscriptionType | None
    webhook_endpoint: WebhookEndpointType | None = strawberry_django.field(field_name="endpoint")
    email: auto
    status: auto
    event_ts: auto
    anomaly_ids: JSON
    series_ids: JSON
    due_at: auto
    attempts: auto
    last_error: auto
    sent_at: auto
    replay_of_id: strawberry.ID | None
    payload: JSON
    created_at: auto
    attempts_log: list[DeliveryAttemptType] = strawberry_django.field(field_name="delivery_attempts",
                                                                             pagination=True)


@strawberry.type(description="What a subscription would have sent over [start, end); nothing is stored or sent.")
class AlertReplayType:
    subscription_id: strawberry.ID | None
    anomalies: JSON
    notifications: JSON
    suppressed: JSON
    precision: JSON
    elapsed_ms: float

    @classmethod
    def from_result(cls, result: dict) -> AlertReplayType:
        return cls(subscription_id=result["subscription"], anomalies=result["anomalies"],
                   notifications=result["notifications"], suppressed=result["suppressed"],
                   precision=result["precision"], elapsed_ms=result["elapsed_ms"])
