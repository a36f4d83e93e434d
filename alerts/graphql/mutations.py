"""Alerts mutations: thin adapters over alerts.services (which check ownership and roles).

Invalid input (a bad choice, a target of another organization, an unsafe webhook URL) is a typed
InputError result; missing or other organizations' objects are `not_found` GraphQL errors."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated

import strawberry
import strawberry_django
from django.core.exceptions import ValidationError

from accounts.graphql.base import InputError, actor_of, given, input_errors
from accounts.tenancy import Actor, get_for_actor
from anomalyhub.lib.errors import InvalidError
from detection.models import Detector, Rule
from watchlists.models import Series, Watchlist

from ..models import AlertSubscription, Notification, WebhookEndpoint
from ..services import delivery, replay, subscriptions, webhooks
from .types import (
    AlertReplayType,
    AlertSubscriptionType,
    DeliveryType,
    NewWebhookSecretType,
    WebhookEndpointType,
)

AlertSubscriptionResult = Annotated[AlertSubscriptionType | InputError, strawberry.union("AlertSubscriptionResult")]
AlertReplayResult = Annotated[AlertReplayType | InputError, strawberry.union("AlertReplayResult")]
WebhookEndpointResult = Annotated[WebhookEndpointType | InputError, strawberry.union("WebhookEndpointResult")]
NewWebhookSecretResult = Annotated[NewWebhookSecretType | InputError, strawberry.union("NewWebhookSecretResult")]

# Input field -> the model it names; resolved inside the caller's organization only.
REFERENCES = {"watchlist_id": Watchlist, "series_id": Series, "rule_id": Rule, "detector_id": Detector,
              "webhook_id": WebhookEndpoint}


@strawberry.input(description="target is everything, watchlist, series, rule or detector (name the one it "
                              "needs); channels are email and/or webhook (webhook needs webhookId).")
class CreateAlertSubscriptionInput:
    name: str = ""
    target: str = "everything"
    watchlist_id: strawberry.ID | None = None
    series_id: strawberry.ID | None = None
    rule_id: strawberry.ID | None = None
    detector_id: strawberry.ID | None = None
    min_severity: str = "low"
    channels: list[str] = strawberry.field(default_factory=lambda: ["email"])
    webhook_id: strawberry.ID | None = None
    cooldown_seconds: int = 0
    group_window_seconds: int = 0
    incident_min_symbols: int = 3
    quiet_start: time | None = None
    quiet_end: time | None = None
    quiet_mode: str = "hold"
    snooze_until: datetime | None = None
    session_only: bool = False
    notify_resolution: bool = False
    resolve_after_seconds: int = 300
    flap_threshold: int = 4
    flap_window_seconds: int = 3600
    enabled: bool = True


@strawberry.input(description="Only the fields given change.")
class UpdateAlertSubscriptionInput:
    name: str | None = strawberry.UNSET
    target: str | None = strawberry.UNSET
    watchlist_id: strawberry.ID | None = strawberry.UNSET
    series_id: strawberry.ID | None = strawberry.UNSET
    rule_id: strawberry.ID | None = strawberry.UNSET
    detector_id: strawberry.ID | None = strawberry.UNSET
    min_severity: str | None = strawberry.UNSET
    channels: list[str] | None = strawberry.UNSET
    webhook_id: strawberry.ID | None = strawberry.UNSET
    cooldown_seconds: int | None = strawberry.UNSET
    group_window_seconds: int | None = strawberry.UNSET
    incident_min_symbols: int | None = strawberry.UNSET
    quiet_start: time | None = strawberry.UNSET
    quiet_end: time | None = strawberry.UNSET
    quiet_mode: str | None = strawberry.UNSET
    snooze_until: datetime | None = strawberry.UNSET
    session_only: bool | None = strawberry.UNSET
    notify_resolution: bool | None = strawberry.UNSET
    resolve_after_seconds: int | None = strawberry.UNSET
    flap_threshold: int | None = strawberry.UNSET
    flap_window_seconds: int | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET


@strawberry.input
class CreateWebhookEndpointInput:
    url: str
    description: str = ""
    enabled: bool = True


@strawberry.input(description="Only the fields given change; enabling again clears the failure run.")
class UpdateWebhookEndpointInput:
    url: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET


def _reference(actor: Actor, field: str, value):
    model = REFERENCES[field]
    if value is None:
        return None
    text = str(value)
    obj = model.objects.for_actor(actor).filter(pk=int(text)).first() if text.isdigit() and len(text) <= 18 else None
    if obj is None:
        name = field.removesuffix("_id")
        raise InvalidError(f"Unknown {name} {value}.", details={name: [f"No {name} {value} in your organization."]})
    return obj


def _clean(obj, exclude: list[str]) -> None:
    """Model validation (choices, non-negative counts, URL form) as an InputError, never a 500."""
    try:
        obj.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise InvalidError("Invalid input; see details.", details=exc.message_dict) from exc


def _apply(actor: Actor, sub: AlertSubscription, given: dict) -> AlertSubscription:
    for field, value in given.items():
        if field in REFERENCES:
            setattr(sub, field.removesuffix("_id"), _reference(actor, field, value))
        else:
            setattr(sub, field, value)
    _clean(sub, exclude=["organization", "user", *(f.removesuffix("_id") for f in REFERENCES)])
    return sub


def _window(start: datetime, end: datetime) -> dict:
    if end <= start:
        raise InvalidError("end must be after start.", details={"end": ["end must be after start."]})
    return {"start": start, "end": end}


def _subscription(info, id, action="view") -> AlertSubscription:
    actor = actor_of(info)
    return get_for_actor(subscriptions.visible_subscriptions(actor), actor, id, action)


def _endpoint(info, id) -> WebhookEndpoint:
    return get_for_actor(WebhookEndpoint.objects.all(), actor_of(info), id, "manage")


@strawberry.type
class AlertsMutation:
    @strawberry_django.mutation(handle_django_errors=False, description="A subscription for the caller (a user).")
    def create_alert_subscription(self, info: strawberry.Info,
                                  input: CreateAlertSubscriptionInput) -> AlertSubscriptionResult:
        actor = actor_of(info)
        return input_errors(lambda: subscriptions.save_subscription(
            actor=actor, subscription=_apply(actor, AlertSubscription(organization_id=actor.organization_id),
                                             vars(input))))

    @strawberry_django.mutation(handle_django_errors=False, description="Your own; admins: anyone's.")
    def update_alert_subscription(self, info: strawberry.Info, id: strawberry.ID,
                                  input: UpdateAlertSubscriptionInput) -> AlertSubscriptionResult:
        actor = actor_of(info)
        sub = _subscription(info, id)
        return input_errors(lambda: subscriptions.save_subscription(actor=actor,
                                                                    subscription=_apply(actor, sub, given(input))))

    @strawberry_django.mutation(handle_django_errors=False)
    def delete_alert_subscription(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        subscriptions.delete_subscription(actor=actor_of(info), subscription=_subscription(info, id))
        return id

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Would this subscription have fired? Replays [start, end) of history "
                                            "through its noise control; nothing is stored or sent.")
    def replay_alert_subscription(self, info: strawberry.Info, id: strawberry.ID, start: datetime,
                                  end: datetime) -> AlertReplayResult:
        actor = actor_of(info)
        sub = _subscription(info, id)
        return input_errors(lambda: AlertReplayType.from_result(
            replay.replay_subscription(actor=actor, subscription=sub, **_window(start, end))))

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Replays an unsaved subscription over [start, end) before enabling it.")
    def dry_run_alert_subscription(self, info: strawberry.Info, input: CreateAlertSubscriptionInput,
                                   start: datetime, end: datetime) -> AlertReplayResult:
        actor = actor_of(info)

        def run():
            window = _window(start, end)
            sub = _apply(actor, AlertSubscription(organization_id=actor.organization_id, user=actor.credited_user),
                         vars(input))
            subscriptions.validate(sub)
            return AlertReplayType.from_result(replay.replay_subscription(actor=actor, subscription=sub, **window))
        return input_errors(run)

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Admins: a new endpoint; `secret` is returned this once.")
    def create_webhook_endpoint(self, info: strawberry.Info,
                                input: CreateWebhookEndpointInput) -> NewWebhookSecretResult:
        actor = actor_of(info)

        def create():
            _clean(WebhookEndpoint(**vars(input)), exclude=["organization", "secret", "created_by"])
            endpoint = webhooks.create_endpoint(actor=actor, **vars(input))
            return NewWebhookSecretType(webhook_endpoint=endpoint, secret=endpoint.secret)
        return input_errors(create)

    @strawberry_django.mutation(handle_django_errors=False)
    def update_webhook_endpoint(self, info: strawberry.Info, id: strawberry.ID,
                                input: UpdateWebhookEndpointInput) -> WebhookEndpointResult:
        endpoint = _endpoint(info, id)
        fields = {k: v for k, v in given(input).items() if v is not None}

        def update():
            if "url" in fields:
                _clean(WebhookEndpoint(url=fields["url"]), exclude=["organization", "secret", "created_by"])
            return webhooks.update_endpoint(actor=actor_of(info), endpoint=endpoint, **fields)
        return input_errors(update)

    @strawberry_django.mutation(handle_django_errors=False)
    def delete_webhook_endpoint(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        webhooks.delete_endpoint(actor=actor_of(info), endpoint=_endpoint(info, id))
        return id

    @strawberry_django.mutation(handle_django_errors=False,
                                description="A new signing secret (returned this once); the previous one keeps "
                                            "signing next to it for 24 hours.")
    def rotate_webhook_endpoint_secret(self, info: strawberry.Info, id: strawberry.ID) -> NewWebhookSecretType:
        endpoint = webhooks.rotate_secret(actor=actor_of(info), endpoint=_endpoint(info, id))
        return NewWebhookSecretType(webhook_endpoint=endpoint, secret=endpoint.secret)

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Sends a signed webhook.test event; the result is in the delivery log.")
    def test_webhook_endpoint(self, info: strawberry.Info, webhook_endpoint_id: strawberry.ID) -> DeliveryType:
        return webhooks.test_send(actor=actor_of(info), endpoint=_endpoint(info, webhook_endpoint_id))

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Sends a logged notification again (same payload) as a new delivery.")
    def replay_delivery(self, info: strawberry.Info, id: strawberry.ID) -> DeliveryType:
        actor = actor_of(info)
        notification = get_for_actor(subscriptions.owned_by(Notification.objects.all(), actor), actor, id)
        return delivery.replay(notification=notification, actor=actor)
